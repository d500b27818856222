"""The local Ray cluster a default sweep starts: loopback only, token authentication, clean shutdown.

The sweep runs as a user would start it (``python -m pipeline.sweep``, ``cluster=local`` by default,
no ``RAY_*`` variable set), and every process it starts is watched while it runs: the driver and
all its descendants (GCS, raylet, dashboard and autoscaler processes, agents, worker actors).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import psutil
import pytest
from sweeps import REPO, rows, write_task

pytestmark = pytest.mark.slow
GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    return bool((getattr(address, "ipv4_mapped", None) or address).is_loopback)


def _watch(driver: psutil.Process, seen: dict, listening: set, env_of: dict) -> None:
    """Records the driver's process tree, every LISTEN socket in it and each process's RAY_AUTH_MODE."""
    try:
        tree = [driver, *driver.children(recursive=True)]
    except GONE:
        return
    for proc in tree:
        try:
            seen.setdefault(proc.pid, proc)
            name = proc.name()
            environ = proc.environ()
            if environ:  # empty in the instant of exec when comm is already the new name (seen once in CI)
                env_of.setdefault(name, environ.get("RAY_AUTH_MODE"))
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    listening.add((name, conn.laddr.ip, conn.laddr.port))
        except GONE:
            continue


def test_default_cluster_listens_on_loopback_only_with_token_auth(tmp_path):
    task = write_task(tmp_path / "task.jsonl", n=6)
    out = tmp_path / "out"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)  # Ray writes a generated token to ~/.ray/auth_token
    log = tmp_path / "sweep.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.sweep", "model.tiny.n_layers=3", "max_new_tokens=20", "task=jsonl",
             f"task.path={task}", "shard_size=1", f"out_dir={out}"],
            cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    driver = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    listening: set[tuple[str, str, int]] = set()
    env_of: dict[str, str | None] = {}
    try:
        deadline = time.monotonic() + 500
        while proc.poll() is None and time.monotonic() < deadline:
            _watch(driver, seen, listening, env_of)
            time.sleep(0.1)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, listening
    assert any("ShardWorke" in name for name in names), listening
    exposed = sorted((name, ip, port) for name, ip, port in listening if not _loopback(ip))
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert env_of["gcs_server"] == "token" and env_of["raylet"] == "token"
    assert not (home / ".ray" / "auth_token").exists()
    for noise in ("Token authentication", "Traceback", "Fatal Python error", "SIGABRT", "core dumped"):
        assert noise not in text, text[-3000:]
    assert rows(out).num_rows == 6 * 10
    # the pool and the cluster were shut down by the run itself, not by its exit
    deadline = time.monotonic() + 30
    alive = [p for p in seen.values() if p.pid != proc.pid and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    names_alive = []
    for p in alive:
        try:
            names_alive.append(p.name())
            p.kill()
        except GONE:
            continue
    assert not names_alive, f"still running after a finished sweep: {names_alive}"
