"""The sweep on a real local Ray cluster (loopback): same rows as in-process, GPU pinning, a worker
killed mid-shard, the driver killed with SIGKILL (its workers stop writing at once), Hydra
multirun, and ``ray job submit``.

The local cluster declares 2 logical GPUs (this machine has none), so workers are scheduled with
``num_gpus=1`` each exactly as on a GPU node; the model itself runs on CPU.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import ray
from sweeps import REPO, cli, compose_sweep, keys, rows, wait_for, write_task

from pipeline.errors import PipelineError
from pipeline.sweep.runner import RunPlan
from pipeline.sweep import run

pytestmark = pytest.mark.slow
TINY = ["model.tiny.n_layers=3", "max_new_tokens=5"]


@pytest.fixture(scope="module")
def local_ray():
    # loopback and token auth come from the environment conftest.py sets, as pipeline.sweep.workers does
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False)
    yield
    started = psutil.Process().children(recursive=True)  # GCS, raylet, its agents and workers
    ray.shutdown()
    _, left = psutil.wait_procs(started, timeout=10)
    _end(left)  # an agent of this cluster once outlived it, spinning at 50% CPU for the rest of the suite


def canonical(table):
    cols = ["instance_id", "granularity", "source_layer", "target_layer", "token_ids", "correct"]
    return Counter(tuple(map(repr, r)) for r in zip(*(table.column(c).to_pylist() for c in cols)))


def test_ray_sweep_equals_inprocess(local_ray, tmp_path):
    """A CPU run on a cluster with (logical) GPUs: its workers hold no GPU, its rows are the in-process run's."""
    task = write_task(tmp_path / "task.jsonl", n=6)
    common = [*TINY, "task=jsonl", f"task.path={task}", "granularity=[attn,ffn]", "shard_size=2", "model.device=cpu"]
    ray_out = run(compose_sweep([*common, "cluster=local", f"out_dir={tmp_path / 'ray'}"]))
    local_out = run(compose_sweep([*common, "cluster=inprocess", f"out_dir={tmp_path / 'local'}"]))
    assert canonical(rows(ray_out)) == canonical(rows(local_out))
    assert len(list((ray_out / "shards").glob("*.parquet"))) == 3
    meta = json.loads((ray_out / "run.json").read_text())
    assert all(w["gpus"] == [] and w["device"] == "cpu float32" for w in meta["workers"])
    assert meta["result_identity"]["model"]["device"] == "cpu"


def test_auto_on_a_cluster_with_gpus_means_cuda_and_is_never_mixed_with_cpu(local_ray, tmp_path):
    """model.device=auto where the cluster has GPUs: the run is a CUDA run; a worker that sees no CUDA
    (logical GPUs here) refuses in one line, never computing its shards on the CPU."""
    task = write_task(tmp_path / "task.jsonl", n=2)
    with pytest.raises(PipelineError, match=r"^a worker on node 127\.0\.0\.1 could not start: "
                                            r"model\.device=cuda but no CUDA device is visible to this process$"):
        run(compose_sweep([*TINY, "task=jsonl", f"task.path={task}", f"out_dir={tmp_path / 'out'}"]))
    assert not list((tmp_path / "out").glob("shards/*.parquet"))


def test_workers_hold_distinct_gpus(local_ray, tmp_path):
    from pipeline.sweep.config import ClusterSpec
    from pipeline.sweep.plan import GridPlan
    from pipeline.sweep.workers import start_workers

    cfg = compose_sweep([*TINY, "task=jsonl", f"task.path={write_task(tmp_path / 't.jsonl')}", f"out_dir={tmp_path}"])
    plan = RunPlan(model=cfg.model, task=cfg.task, grid=GridPlan(("attn",), ((0, 0),)), engine=cfg.engine,
                   tags=None, debug=cfg.debug)
    workers = start_workers(plan, ClusterSpec(), gpus=True)
    ids = ray.get([w.gpu_ids.remote() for w in workers])
    assert len(workers) == 2
    assert sorted(len(i) for i in ids) == [1, 1] and ids[0] != ids[1]
    for w in workers:
        ray.kill(w)


def test_worker_killed_mid_shard_is_survived(local_ray, tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=6)
    marker = tmp_path / "crashed"
    out = run(compose_sweep([*TINY, "task=jsonl", f"task.path={task}", "shard_size=2", "cluster=local",
                             "model.device=cpu", "debug.crash_on_shard=1", f"debug.crash_marker={marker}",
                             f"out_dir={tmp_path / 'out'}"]))
    assert marker.exists(), "the injected crash did not happen"
    table = rows(out)
    assert table.num_rows == 6 * (1 + 9)
    assert len(set(keys(table))) == table.num_rows


def _end(processes) -> None:
    """Kills whatever is left of a killed driver's processes (Ray's agents linger; they write nothing)."""
    for proc in processes:
        try:
            proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def _running(proc) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_driver_sigkill_stops_its_workers_then_rerun_completes_exactly(tmp_path):
    """SIGKILL to the driver alone: its worker actors die at once and write no shard after the kill."""
    task = write_task(tmp_path / "task.jsonl", n=8)
    out = tmp_path / "out"
    args = ["pipeline.sweep", *TINY, "task=jsonl", f"task.path={task}", "shard_size=1", "cluster.num_workers=1",
            "max_new_tokens=20", f"out_dir={out}"]
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: list = []
    workers: list = []
    try:
        wait_for(lambda: len(list(out.glob("shards/*.parquet"))) >= 2, 240, "two finished shards")
        started = psutil.Process(proc.pid).children(recursive=True)
        workers = [p for p in started if "ShardWorke" in p.name()]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        driver_dead = time.time()  # reaped: its raylet got its parent-death SIGKILL as it exited
        wait_for(lambda: not any(_running(w) for w in workers), 5, "the worker actors to die with the driver")
        time.sleep(5)  # a worker outliving its driver would finish shards (about 0.2 s each) in this wait
    finally:
        if proc.poll() is None:
            proc.kill()
        _end(started)
    assert workers, "no worker actor was running at the kill"
    # 0.1 s: the raylet's own exit after the driver's; before the fix workers wrote for 0.3-0.7 s more
    late = sorted(p.name for p in out.glob("shards/*.parquet") if p.stat().st_mtime > driver_dead + 0.1)
    assert not late, f"shards written after the driver was dead: {late}"
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("shards/*.parquet")}
    assert 2 <= len(done_before) < 8, "the kill did not land mid-run"
    again = cli(args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(done_before)}/8 shards already done" in again.stdout
    for name, mtime in done_before.items():
        assert (out / "shards" / name).stat().st_mtime_ns == mtime
    table = rows(out)
    assert table.num_rows == 8 * 10 and len(set(keys(table))) == table.num_rows


def test_hydra_multirun_one_out_dir_per_run(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=2)
    proc = cli(["pipeline.sweep", "-m", *TINY, "task=jsonl", f"task.path={task}", "granularity=attn,block",
                f"out_dir={tmp_path}/runs/${{granularity}}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for g in ("attn", "block"):
        table = rows(tmp_path / "runs" / g)
        assert set(table.column("granularity").to_pylist()) == {g}
        assert table.num_rows == 2 * 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_head(token: str) -> None:
    """Kills the processes of the head started with auth token ``token``, and only those.

    ``ray stop`` would kill every Ray process on the machine, including a user's own sweep (its
    raylet died while this suite ran beside it). The head's GCS, raylet and client server inherit
    the head's environment with this test's random token; the raylet's agents do not always keep
    it (and rename themselves), so the processes below token holders go too.
    """
    ours = _head_processes(token)
    _end(ours)
    psutil.wait_procs(ours, timeout=30)


def _head_processes(token: str) -> list[psutil.Process]:
    """Running processes whose environment holds RAY_AUTH_TOKEN=token, and their descendants."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RAY_AUTH_TOKEN") == token:
                for p in (proc, *proc.children(recursive=True)):
                    found.setdefault(p.pid, p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return [p for p in found.values() if _running(p)]


def test_ray_job_submit_against_a_running_head(local_ray, tmp_path):
    """A sweep submitted as a Ray job to a running head; stopping that head spares other clusters."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    # Ray >= 2.59 enables token authentication for local clusters: share one token with the head
    # and the job client, as the Ray docs describe (RAY_AUTH_MODE=token + RAY_AUTH_TOKEN).
    token = secrets.token_hex(32)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    port, dash, agent = _free_port(), _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # its own session files; short for socket paths
    try:
        start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                                "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2",
                                f"--dashboard-agent-listen-port={agent}", f"--temp-dir={temp_dir}",
                                "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=300)
        assert start.returncode == 0, start.stderr[-2000:]
        task = write_task(tmp_path / "task.jsonl", n=2)
        out = tmp_path / "out"
        command = [ray_bin, "job", "submit", f"--address=http://127.0.0.1:{dash}", "--working-dir", str(REPO), "--",
                   "python", "-m", "pipeline.sweep", *TINY, "task=jsonl", f"task.path={task}", f"out_dir={out}"]
        for _ in range(30):  # the head's job agent comes up a little after `ray start` returns
            submit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            if "No available agent to submit job" not in submit.stdout + submit.stderr:
                break
            time.sleep(2)
        assert submit.returncode == 0, (submit.stdout + submit.stderr)[-3000:]
        assert "succeeded" in submit.stdout.lower()
        table = rows(out)
        assert table.num_rows == 2 * 10
        # the same head refuses a submission without the token: nobody else runs code on its nodes
        anonymous = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        refused = subprocess.run(command, env=anonymous, capture_output=True, text=True,
                                 timeout=300)  # fmt: skip
        said = (refused.stdout + refused.stderr).lower()
        assert refused.returncode != 0 and ("401" in said or "unauthorized" in said or "authentication" in said), said[-2000:]
        assert table.num_rows == rows(out).num_rows  # nothing ran
    finally:
        _stop_head(token)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not _head_processes(token)
    # the module's own cluster (another Ray on this machine, like a user's sweep) still runs tasks
    assert ray.get(ray.remote(lambda: 42).remote(), timeout=60) == 42


def test_cuda_on_a_cluster_without_gpus_is_refused_before_any_worker(tmp_path):
    """model.device=cuda where the Ray cluster has no GPU resource: one line at the driver, exit 2, nothing written."""
    task = write_task(tmp_path / "task.jsonl", n=2)
    done = cli(["pipeline.sweep", *TINY, "task=jsonl", f"task.path={task}", "model.device=cuda", "cluster.num_gpus=0",
                f"out_dir={tmp_path / 'out'}"])  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: model.device=cuda, but the Ray cluster has no GPU resource (live nodes: 127.0.0.1 CPU ")
    assert errors[0].endswith(" GPU 0); use model.device=auto or cpu, or run on nodes with GPUs")
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
