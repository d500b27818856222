"""Scale-out on a real two-node Ray cluster (tests/multinode.py): every row reaches one result store
whatever node computed it, a node lost mid-run, pools the cluster cannot hold, an S3 store.

Each completed run is compared with an in-process run of the same command: identical rows, no
duplicates. Node 2 has a private disk over the results folder, as a second machine would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from multinode import HEAD_IP, NODE2_IP, LoopbackCluster
from sweeps import REPO, compose_sweep, rows, wait_for, write_task

from pipeline.sweep import run

pytestmark = pytest.mark.slow
TINY = ["model.tiny.n_layers=3", "max_new_tokens=5"]
SLOW = ["chunk_size=1"]  # one config row per decode: same token ids, ~10x the time per shard, so a kill lands mid-run
COLUMNS = ["instance_id", "granularity", "source_layer", "target_layer", "token_ids", "response", "correct"]


def canonical(table) -> Counter:
    return Counter(zip(*(map(repr, table.column(c).to_pylist()) for c in COLUMNS)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The in-process run every cluster run is compared with (8 instances, shard_size=1)."""
    root = tmp_path_factory.mktemp("multinode")
    task = write_task(root / "task.jsonl", n=8)
    args = [*TINY, "max_new_tokens=20", "task=jsonl", f"task.path={task}", "shard_size=1"]
    out = run(compose_sweep([*args, "cluster=inprocess", f"out_dir={root / 'inprocess'}"]))
    return args, rows(out)


def sweep(cluster: LoopbackCluster, args: list[str], timeout: float = 600):
    """``python -m pipeline.sweep`` as a driver on the head node of ``cluster`` (a Ray job's driver)."""
    return cluster.run([sys.executable, "-m", "pipeline.sweep", *args], check=False, cwd=REPO,
                       env={"RAY_ADDRESS": cluster.address}, timeout=timeout)  # fmt: skip


def test_rows_computed_on_a_node_with_a_private_disk_reach_the_drivers_store(tmp_path, reference):
    args, expected = reference
    results = tmp_path / "results"  # node 2 sees an empty tmpfs here: a second machine's own disk
    with LoopbackCluster(private=[results]) as cluster:
        done = sweep(cluster, [*args, "cluster.num_workers=2", f"out_dir={results / 'run'}"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    meta = json.loads((results / "run" / "run.json").read_text())
    assert {w["node"] for w in meta["workers"]} == {HEAD_IP, NODE2_IP}
    assert NODE2_IP in meta["computed_on"].values(), "node 2 computed no shard: the test proves nothing"
    assert len(list((results / "run" / "shards").glob("*.parquet"))) == 8
    assert canonical(rows(results / "run")) == canonical(expected)
    assert "worker 1 on node" in done.stdout and "cpu float32" in done.stdout


def test_node_lost_mid_run_with_capacity_left_completes_exactly(tmp_path, reference):
    args, expected = reference
    out = tmp_path / "run"
    with LoopbackCluster(private=[], head_cpus=2, node2_cpus=1) as cluster:
        driver = cluster.popen([sys.executable, "-m", "pipeline.sweep", *args, *SLOW, "cluster.num_workers=2",
                                f"out_dir={out}"], cwd=REPO, env={"RAY_ADDRESS": cluster.address},
                               stdout=(tmp_path / "log").open("w"), stderr=subprocess.STDOUT)  # fmt: skip
        wait_for(lambda: len(list(out.glob("shards/*.parquet"))) >= 2, 300, "two finished shards")
        cluster.raylet(NODE2_IP).kill()  # node 2 dies: its worker with it, mid-shard
        assert driver.wait(timeout=600) == 0, (tmp_path / "log").read_text()[-3000:]
    table = rows(out)
    assert table.num_rows == expected.num_rows and canonical(table) == canonical(expected)  # no row lost or twice


def test_node_lost_without_capacity_stops_with_one_line_then_resumes_exactly(tmp_path, reference):
    args, expected = reference
    out = tmp_path / "run"
    with LoopbackCluster(private=[]) as cluster:
        log = tmp_path / "log"
        driver = cluster.popen([sys.executable, "-m", "pipeline.sweep", *args, *SLOW, "cluster.num_workers=2",
                                "cluster.stall_timeout_s=15", f"out_dir={out}"], cwd=REPO,
                               env={"RAY_ADDRESS": cluster.address}, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)  # fmt: skip
        wait_for(lambda: len(list(out.glob("shards/*.parquet"))) >= 1, 300, "a finished shard")
        cluster.raylet(NODE2_IP).kill()  # its worker can go nowhere: the head's one CPU is taken
        code = driver.wait(timeout=600)
        text = log.read_text()
        assert code == 2, text[-3000:]
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        # Ray either keeps the shard's task waiting for the restart (the stall watchdog ends it) or
        # fails it once its retries are spent on the dead address: one line either way
        assert len(errors) == 1 and "re-run resumes" in errors[0], text[-3000:]
        assert "waited more than 15 s" in errors[0] or "a worker was lost" in errors[0], errors[0]
        assert "Traceback" not in text
        kept = len(list(out.glob("shards/*.parquet")))
        assert 1 <= kept < 8
        cluster.start_node2()  # capacity is back
        again = sweep(cluster, [*args, *SLOW, "cluster.num_workers=2", f"out_dir={out}"])
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert f"{kept}/8 shards already done" in again.stdout
    assert canonical(rows(out)) == canonical(expected)


def test_pools_the_cluster_cannot_hold_are_sized_or_refused(tmp_path, reference):
    args, _ = reference
    with LoopbackCluster(private=[], head_gpus=4, node2_gpus=4) as cluster:
        # one CPU per node, four logical GPUs each: 8 (CPU) workers asked, 2 fit (no hang with 6 pending)
        sized = sweep(cluster, [*args, "model.device=cpu", "cluster.num_workers=8", f"out_dir={tmp_path / 'sized'}"])
        refused = sweep(cluster, [*args, "cluster.cpus_per_worker=4", f"out_dir={tmp_path / 'refused'}"])
        auto = sweep(cluster, [*args, f"out_dir={tmp_path / 'auto'}"])
    assert sized.returncode == 0, (sized.stdout + sized.stderr)[-3000:]
    assert "cluster.num_workers=8, but the live nodes hold 2 workers" in sized.stdout
    meta = json.loads((tmp_path / "sized" / "run.json").read_text())
    assert len(meta["workers"]) == 2 and all(w["gpus"] == [] for w in meta["workers"])  # a CPU run holds no GPU
    assert refused.returncode == 2 and _error_lines(refused) == [
        "error: no node of the Ray cluster can hold a worker, which asks for 4 CPU and 1 GPU (live nodes: "
        f"{HEAD_IP} CPU 1 GPU 4, {NODE2_IP} CPU 1 GPU 4); lower cluster.cpus_per_worker or add nodes"
    ], refused.stderr
    assert not (tmp_path / "refused").exists()
    # model.device=auto on a cluster with GPUs is a CUDA run; GPUs declared but no CUDA: the workers'
    # __init__ fails, one line with its cause (not Ray's traceback), nothing computed on the CPU instead
    assert auto.returncode == 2, (auto.stdout + auto.stderr)[-3000:]
    errors = _error_lines(auto)
    assert len(errors) == 1 and "model.device=cuda but no CUDA device is visible" in errors[0], auto.stderr
    assert "Traceback" not in auto.stdout + auto.stderr
    assert not list((tmp_path / "auto").glob("shards/*.parquet"))


def _error_lines(done) -> list[str]:
    """The ``error:`` lines of a finished command (Ray's own INFO lines about connecting aside)."""
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]


def test_rows_reach_an_s3_store_on_loopback(tmp_path, reference):
    """A real S3-compatible server (moto) inside the cluster's network; the driver writes every shard there."""
    args, expected = reference
    port = 5000
    s3 = f"s3://xtransplant/run?endpoint_override={HEAD_IP}:{port}&scheme=http&region=us-east-1"
    credentials = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    with LoopbackCluster(private=[tmp_path / "results"]) as cluster:
        cluster.env.update(credentials)
        server = cluster.popen([str(Path(sys.executable).parent / "moto_server"), "-H", HEAD_IP, "-p", str(port)],
                               stdout=(tmp_path / "moto.log").open("w"), stderr=subprocess.STDOUT)  # fmt: skip
        make_bucket = (f"import pyarrow.fs as f; fs, _ = f.FileSystem.from_uri('s3://xtransplant?endpoint_override={HEAD_IP}:{port}"
                       "&scheme=http&region=us-east-1&allow_bucket_creation=true'); fs.create_dir('xtransplant')")  # fmt: skip
        wait_for(lambda: cluster.run([sys.executable, "-c", make_bucket], check=False).returncode == 0, 60, "moto")
        done = sweep(cluster, [*args, "cluster.num_workers=2", f"out_dir='{s3}'"])  # quoted: ? & = in a Hydra value
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        local = tmp_path / "copy"
        copy = (f"import pyarrow.fs as f; fs, root = f.FileSystem.from_uri('{s3}'); "
                f"f.copy_files(root, '{local}', source_filesystem=fs, destination_filesystem=f.LocalFileSystem())")  # fmt: skip
        cluster.run([sys.executable, "-c", copy])
        report = sweep_reduce(cluster, [f"run='{s3}'", f"out={tmp_path / 'report'}", "report.figures=false"])
        in_bucket = sweep_reduce(cluster, [f"run='{s3}'", "report.figures=false"])  # default out: the run's report/
        cluster.run([sys.executable, "-c", copy])
        server.kill()
    assert report.returncode == 0, (report.stdout + report.stderr)[-3000:]
    assert in_bucket.returncode == 0, (in_bucket.stdout + in_bucket.stderr)[-3000:]
    meta = json.loads((local / "run.json").read_text())
    assert NODE2_IP in meta["computed_on"].values()
    assert canonical(rows(local / "shards")) == canonical(expected)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["runs"][0]["n_instances"] == 8 and summary["partial"] is None
    assert json.loads((local / "report" / "summary.json").read_text())["runs"] == summary["runs"]


def sweep_reduce(cluster: LoopbackCluster, args: list[str]):
    return cluster.run([sys.executable, "-m", "pipeline.reduce", *args], check=False, cwd=REPO)


def test_the_cluster_listens_only_inside_its_namespace_and_leaves_nothing(tmp_path):
    """Every listener of the cluster is in its private namespace; stop() ends all its processes."""
    with LoopbackCluster(private=[]) as cluster:
        inside = cluster.run(["ss", "-Hltn"]).stdout
        host = {line.split()[3] for line in subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout.splitlines()}
        ports = {line.split()[3].rsplit(":", 1)[1] for line in inside.splitlines()}
        assert f"{6379}" in ports  # the GCS, bound to every interface of its own namespace
        assert not any(addr.endswith(":6379") for addr in host), "the cluster's GCS is reachable from the host"
        started = cluster.processes()
        assert any(p.name() == "raylet" for p in started)
    assert not cluster.processes()
    assert all(not p.is_running() or p.status() == "zombie" for p in started)
