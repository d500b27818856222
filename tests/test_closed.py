"""Closed and safe by default (issue 28): credentials never shown, the lease neither expires under a
live sweep nor outlives a dead one, full disks and hung workers in one line, every input checked.

The object store is a real S3-compatible server (moto in server mode) on loopback, started here
and stopped by its pid; the full disk is a real tmpfs in a private mount namespace. (Selectors
that hold code: ``test_select_e2e.py``; the cache's and packages' checksums: ``test_models_gguf.py``;
an unauthenticated job refused by a head: ``test_sweep_ray.py``.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from sweeps import REPO, cli, compose_sweep, rows, wait_for, write_task

from pipeline.errors import PipelineError
from pipeline.sweep import run
from pipeline.sweep import outdir as outdir_module
from pipeline.store import Store, redact

TINY = ["cluster=inprocess", "model.tiny.n_layers=2", "max_new_tokens=3"]
SECRET = "s3cr3t-Do-Not-Leak"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 with a bucket; yields the URI prefix of that bucket (no credentials)."""
    port = _free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")  # moto takes any
    try:
        def up() -> bool:
            try:
                fs, _ = pafs.FileSystem.from_uri(f"s3://closed?{query}&allow_bucket_creation=true")
                fs.create_dir("closed")
                return True
            except OSError:
                return False

        wait_for(up, 60, "the moto server")
        yield "closed", query
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- credentials --------------------------------------------------------------------------------
def test_redact_removes_user_info_and_secret_parameters():
    assert redact(f"s3://AKIA:{SECRET}@bucket/run?region=eu&endpoint_override=h:1") == \
        "s3://***@bucket/run?region=eu&endpoint_override=h:1"  # fmt: skip
    assert redact(f"s3://bucket/run?access_key=AKIA&secret_key={SECRET}&session_token=T&region=eu") == \
        "s3://bucket/run?access_key=***&secret_key=***&session_token=***&region=eu"  # fmt: skip
    assert redact("/data/runs/a@b") == "/data/runs/a@b"  # a local path is shown as it is


def test_credentials_in_the_store_uri_appear_in_no_log_file_or_report(s3, tmp_path, capfd, caplog):
    from pipeline import reduce

    bucket, query = s3
    task = write_task(tmp_path / "task.jsonl", n=2)
    uri = f"s3://AKIA:{SECRET}@{bucket}/run?{query}"
    with caplog.at_level(logging.INFO):
        run(compose_sweep([*TINY, "task=jsonl", f"task.path={task}", f"out_dir='{uri}'"]))
        reduce.main([f"run='{uri}'", f"out={tmp_path / 'report'}", "report.figures=false"])
    fs, root = pafs.FileSystem.from_uri(f"s3://{bucket}/run?{query}")
    stored = {info.path: fs.open_input_stream(info.path).read().decode(errors="replace")
              for info in fs.get_file_info(pafs.FileSelector(root, recursive=True))
              if info.type == pafs.FileType.File and info.path.endswith(".json")}  # fmt: skip
    assert any(path.endswith("run.json") for path in stored)
    report = {p.name: p.read_text(errors="replace") for p in (tmp_path / "report").iterdir()}
    out, err = capfd.readouterr()
    for where, text in [*stored.items(), *report.items(), ("stdout", out), ("stderr", err), ("log", caplog.text)]:
        assert SECRET not in text, f"the secret leaked into {where}"
    assert "s3://***@closed/run" in report["report.md"]


# -- the lease of an object store ---------------------------------------------------------------
def _lease_store(s3, name: str) -> Store:
    bucket, query = s3
    return Store.open(f"s3://{bucket}/{name}?{query}")


def test_the_lease_is_renewed_while_the_sweep_runs(s3, monkeypatch):
    """A holder busy longer than the lease keeps it: a second sweep keeps waiting, never takes it."""
    monkeypatch.setattr(outdir_module, "LEASE_SECONDS", 3)
    monkeypatch.setattr(outdir_module, "HEARTBEAT_SECONDS", 0.5)
    store = _lease_store(s3, "renewed")
    taken = threading.Event()
    with outdir_module.locked_out_dir(store):
        def second() -> None:
            with outdir_module.locked_out_dir(store):
                taken.set()

        other = threading.Thread(target=second, daemon=True)
        other.start()
        time.sleep(8)  # more than twice the lease, one shard's worth of silence
        assert not taken.is_set(), "the lease expired under a live sweep"
    other.join(30)
    assert taken.is_set()  # released at the end: the second one goes on


def test_a_lease_whose_holder_is_gone_is_taken_over_at_once(s3, caplog):
    store = _lease_store(s3, "dead-holder")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.write_bytes(".lock", f"{socket.gethostname()}:{dead.stdout.strip()}:1".encode())
    start = time.monotonic()
    with caplog.at_level(logging.INFO), outdir_module.locked_out_dir(store):
        assert time.monotonic() - start < 5
    assert "that process no longer runs on this host" in caplog.text


def test_waiting_for_a_live_lease_says_when_it_expires_and_how_to_take_it(s3, caplog):
    store = _lease_store(s3, "live-holder")
    store.write_bytes(".lock", f"{socket.gethostname()}:{os.getpid()}:1".encode())  # this process: alive
    got = threading.Event()

    def wait() -> None:
        with outdir_module.locked_out_dir(store):
            got.set()

    with caplog.at_level(logging.INFO):
        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        wait_for(lambda: "is in use by another sweep" in caplog.text, 30, "the wait message")
        assert not got.is_set()
        assert "its lease expires at " in caplog.text and "UTC unless renewed" in caplog.text
        assert "to take it over now, delete s3://closed/live-holder/.lock" in caplog.text
        store.delete(".lock")
        waiter.join(30)
    assert got.is_set()


# -- the local lock, overwrite, move-aside names -----------------------------------------------------
def test_a_symbolic_link_as_the_lock_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PipelineError, match=r"\.lock \(it is a symbolic link, which a lock is never taken through\)"):
        with outdir_module.locked_out_dir(Store.open(out)):
            pass
    assert not (tmp_path / "elsewhere").exists()


def test_overwrite_waits_for_the_lock_before_it_moves_anything(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=2)
    out = tmp_path / "out"
    run(compose_sweep([*TINY, "task=jsonl", f"task.path={task}", f"out_dir={out}"]))
    before = sorted(p.name for p in out.rglob("*"))
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "print('held', flush=True)\ntime.sleep(600)"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        sweep = subprocess.Popen([sys.executable, "-m", "pipeline.sweep", *TINY, "task=jsonl", f"task.path={task}",
                                  "max_new_tokens=2", "overwrite=true", f"out_dir={out}"], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        time.sleep(8)  # the sweep has started and waits on the lock
        assert sweep.poll() is None
        assert sorted(p.name for p in out.rglob("*")) == before  # nothing moved while another sweep held it
        assert not [p for p in tmp_path.iterdir() if ".replaced-" in p.name]
    finally:
        holder.kill()
        holder.wait()
    assert sweep.wait(300) == 0, sweep.stdout.read()
    asides = [p for p in tmp_path.iterdir() if ".replaced-" in p.name]
    assert len(asides) == 1 and any(asides[0].rglob("*.parquet"))
    assert set(rows(out).column("n_new_tokens").to_pylist()) <= {0, 1, 2}


def test_two_overwrites_within_a_second_keep_both_previous_runs(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=2)
    out = tmp_path / "out"
    for new in (3, 2, 1):  # three configurations, each replacing the one before
        run(compose_sweep([*TINY, "task=jsonl", f"task.path={task}", f"max_new_tokens={new}", "overwrite=true",
                           f"out_dir={out}"]))  # fmt: skip
    asides = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out.replaced-"))
    assert len(asides) == 2 and len(set(asides)) == 2
    kept = {frozenset(rows(tmp_path / a).column("n_new_tokens").to_pylist()) for a in asides}
    assert len(kept) == 2  # neither previous run was overwritten by the other


# -- a full disk --------------------------------------------------------------------------------------
FULL_DISK = """
mount -t tmpfs -o size=$SIZE tmpfs "$ROOT" || exit 90
cd "$REPO"
"$PYTHON" -m pipeline.sweep {args} out_dir="$ROOT/out"
status=$?
cp -r "$ROOT/out" "$KEEP"
exit $status
"""


def test_a_full_disk_is_one_line_and_keeps_only_whole_shards(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=8)
    root = tmp_path / "small"
    root.mkdir()
    args = " ".join([*TINY, "task=jsonl", f"task.path={task}", "shard_size=1", "max_new_tokens=20",
                     "granularity=[attn,ffn,block]"])  # fmt: skip
    keep = tmp_path / "kept"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", FULL_DISK.format(args=args)],
        env={**os.environ, "SIZE": "40k", "ROOT": str(root), "KEEP": str(keep), "REPO": str(REPO),
             "PYTHON": sys.executable, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, (done.stdout + done.stderr)[-3000:]
    assert len(errors) == 1 and "No space left on device" in errors[0], errors
    assert "Traceback" not in done.stdout + done.stderr
    shards = sorted((keep / "shards").glob("*.parquet"))
    assert len(shards) < 8
    for shard in shards:  # whatever was kept is whole
        assert pq.read_table(shard).num_rows == 3 * (1 + 4)  # per granularity: vanilla + 2x2 pairs


# -- stall detection, hung workers ------------------------------------------------------------------
def test_stall_detection_does_not_switch_itself_off_when_ray_state_is_unreadable():
    """In a process that never connected to Ray the actor table cannot be read: after the stall
    timeout the run stops with one line instead of waiting without end. (A fresh process: an earlier
    test in this one may have left Ray connected.)"""
    code = (
        "from pipeline.sweep.workers import _check_progress\n"
        "_check_progress([], {}, {}, {}, idle_s=5, now=0.0, stall_timeout_s=10, shard_timeout_s=None)\n"
        "print('not yet', flush=True)\n"
        "_check_progress([], {}, {}, {}, idle_s=11, now=0.0, stall_timeout_s=10, shard_timeout_s=None)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and done.stdout == "not yet\n"
    assert "PipelineError: no shard finished for 10 s and the workers' state cannot be read from Ray" in done.stderr


@pytest.mark.slow
def test_a_hung_worker_is_stopped_by_the_shard_time_limit(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=4)
    done = cli(["pipeline.sweep", "model.tiny.n_layers=2", "max_new_tokens=3", "task=jsonl", f"task.path={task}",
                "shard_size=1", "cluster.num_workers=1", "cluster.shard_timeout_s=20", "debug.hang_on_shard=2",
                f"out_dir={tmp_path / 'out'}"])  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(errors) == 1 and "has been on shard shard-000002-of-000004.parquet for more than 20 s" in errors[0], errors
    assert len(list((tmp_path / "out" / "shards").glob("*.parquet"))) == 2  # shards 0 and 1 are kept


# -- inputs checked before the run --------------------------------------------------------------------
def test_a_prompt_beyond_the_context_window_is_refused_naming_the_instance(tmp_path):
    from families import tiny_family

    model, _, tok = tiny_family("llama")
    model.config.max_position_embeddings = 40
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    task = tmp_path / "task.jsonl"
    task.write_text("\n".join(json.dumps({"id": f"de-{k}", "lang": "de", "prompt": "Frage? " * (2 + 3 * k),
                                          "source_prompt": "Question?", "answer": "ja"}) for k in range(3)) + "\n")
    with pytest.raises(PipelineError, match=r"^instance 'de-1': its prompt is 36 tokens \+ max_new_tokens 20 = 56, "
                                            r"beyond the model's context window of 40 tokens \(max_position_embeddings\)"):
        run(compose_sweep(["cluster=inprocess", "model=hf", f"model.path={tmp_path / 'ckpt'}", "task=jsonl",
                           f"task.path={task}", f"out_dir={tmp_path / 'out'}"]))  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_the_resolved_model_revision_is_part_of_the_run_identity(tmp_path):
    from families import tiny_family

    model, _, tok = tiny_family("llama")
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    task = write_task(tmp_path / "task.jsonl", n=2)
    args = ["cluster=inprocess", "model=hf", f"model.path={ckpt}", "max_new_tokens=2", "task=jsonl",
            f"task.path={task}", f"out_dir={tmp_path / 'out'}"]  # fmt: skip
    out = run(compose_sweep(args))
    meta = json.loads((out / "run.json").read_text())
    assert meta["result_identity"]["model"]["resolved_revision"] == meta["model_revision"]
    assert meta["model_revision"].startswith("local-")
    config = json.loads((ckpt / "config.json").read_text())  # another checkpoint at the same path, same model.revision (null)
    (ckpt / "config.json").write_text(json.dumps({**config, "initializer_range": 0.02}))
    with pytest.raises(PipelineError, match=r"holds results of another configuration .*they differ in: model\)"):
        run(compose_sweep(args))


# -- the cluster: token authentication --------------------------------------------------------------
def test_the_local_cluster_refuses_auth_disabled_from_the_environment(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run([sys.executable, "-m", "pipeline.sweep", "model.tiny.n_layers=2", "task=jsonl",
                           f"task.path={task}", f"out_dir={tmp_path / 'out'}"], cwd=REPO,
                          env={**env, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        "error: RAY_AUTH_MODE=disabled in the environment would start this sweep's local Ray cluster without "
        "authentication; unset it (the sweep then uses a fresh per-run token) or pass cluster.allow_unauthenticated=true"
    ]
    assert not (tmp_path / "out" / "shards").exists()


def test_submit_sends_the_token_and_never_in_clear_text_off_this_host(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("submit", REPO / "jobs" / "submit.py")
    submit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(submit)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="RAY_AUTH_TOKEN is not set"):
        submit.auth_headers("http://127.0.0.1:8265")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0ken")
    assert submit.auth_headers("http://127.0.0.1:8265") == {"Authorization": "Bearer t0ken"}
    assert submit.auth_headers("https://head.example:8265") == {"Authorization": "Bearer t0ken"}
    with pytest.raises(SystemExit, match="would send the token in clear text"):
        submit.auth_headers("http://10.0.0.5:8265")
