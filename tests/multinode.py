"""A real multi-node Ray cluster on this machine, for the scale-out tests.

Every node is a real raylet started by ``ray start``; they differ from machines of a cluster in
two ways that the harness makes explicit:

* **Network.** All of it lives in a private network namespace (``unshare --net``) whose only
  interface is its own loopback: the head on 127.0.0.2, node 2 on 127.0.0.3. Ray binds its GCS,
  raylets and agents to every interface of their namespace when it runs as a cluster (and
  rewrites 127.0.0.1 to the host's address), so only a namespace of its own keeps every
  listener off the machine's real interfaces. Nothing outside the namespace can reach them, and
  nothing in it can reach outside.
* **Disk.** Node 2 runs in a mount namespace of its own with a fresh tmpfs over the folders
  named in ``private``: a second machine's local disk. What a process on node 2 writes there is
  invisible to the head (the failure of a worker writing its shard to "out_dir" on its own node).

Every process the harness starts runs in that network namespace, so :meth:`stop` ends exactly
those (found by their namespace), never another Ray cluster on the machine (``ray stop`` would
kill them all). Needs root for the namespaces, as CI has.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).parent / "ray")
HEAD_IP, NODE2_IP = "127.0.0.2", "127.0.0.3"
GCS_PORT = 6379
STORE = 200 * 2**20  # object store bytes per node: shards are kilobytes; Ray's default would reserve GBs


class LoopbackCluster:
    """Head + node 2 (private disk) in one private network namespace; see the module docstring."""

    def __init__(
        self, private: list[Path], head_cpus: int = 1, node2_cpus: int = 1, head_gpus: int = 0, node2_gpus: int = 0
    ):
        self.private = [Path(p) for p in private]
        self.head_cpus, self.node2_cpus = head_cpus, node2_cpus
        self.head_gpus, self.node2_gpus = head_gpus, node2_gpus  # logical GPUs (this machine has none)
        self.temp = Path(tempfile.mkdtemp(prefix="xtc-", dir="/tmp"))  # short: Ray's socket paths
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # a multi-node cluster (the sweep's private local Ray sets 0)
        }
        self.holder: subprocess.Popen | None = None
        self.netns = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> LoopbackCluster:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec sleep 3600"], start_new_session=True
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "UP" in self.run(["ip", "-o", "link", "show", "lo"], check=False).stdout:
                break
            time.sleep(0.1)
        self.netns = os.stat(f"/proc/{self.holder.pid}/ns/net").st_ino
        self._ray_start(["--head", f"--node-ip-address={HEAD_IP}", f"--port={GCS_PORT}", f"--num-cpus={self.head_cpus}",
                         f"--num-gpus={self.head_gpus}", "--include-dashboard=false", f"--object-store-memory={STORE}",
                         f"--temp-dir={self.temp / 'head'}"])  # fmt: skip
        self.start_node2()
        return self

    def start_node2(self) -> None:
        """Node 2 in its own mount namespace, a tmpfs over each private folder (its local disk)."""
        mounts = " && ".join(f"mkdir -p {p} && mount -t tmpfs tmpfs {p}" for p in self.private) or "true"
        ray = " ".join([RAY, "start", f"--address={HEAD_IP}:{GCS_PORT}", f"--node-ip-address={NODE2_IP}",
                        f"--num-cpus={self.node2_cpus}", f"--num-gpus={self.node2_gpus}", "--disable-usage-stats",
                        f"--object-store-memory={STORE}",
                        f"--temp-dir={self.temp / 'node2'}"])  # fmt: skip
        self._in_ns(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", f"{mounts} && exec {ray}"])
        self.wait_for_nodes(2)

    def _ray_start(self, args: list[str]) -> None:
        self._in_ns([RAY, "start", "--disable-usage-stats", *args])

    def _in_ns(self, command: list[str]) -> None:
        result = self.run(command, check=False, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])} failed: {(result.stdout + result.stderr)[-2000:]}")

    def run(self, command: list[str], check: bool = True, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
        """Runs ``command`` inside the cluster's network namespace (a driver, a probe)."""
        assert self.holder is not None
        full = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *command]
        result = subprocess.run(full, env={**self.env, **kwargs.pop("env", {})}, capture_output=True, text=True,
                                timeout=timeout, **kwargs)  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:6])} exited {result.returncode}: {(result.stdout + result.stderr)[-3000:]}")
        return result

    def popen(self, command: list[str], **kwargs) -> subprocess.Popen:
        assert self.holder is not None
        full = ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *command]
        return subprocess.Popen(full, env={**self.env, **kwargs.pop("env", {})}, start_new_session=True, **kwargs)

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{GCS_PORT}"

    def processes(self) -> list[psutil.Process]:
        """Every live process in the cluster's network namespace (all of them started here)."""
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.pid != getattr(self.holder, "pid", None) and os.stat(f"/proc/{proc.pid}/ns/net").st_ino == self.netns:
                    found.append(proc)
            except (OSError, psutil.Error):
                continue
        return found

    def raylet(self, ip: str) -> psutil.Process:
        """The raylet of the node with ``ip`` (its command line names the node's address)."""
        for proc in self.processes():
            try:
                if proc.name() == "raylet" and f"--node_ip_address={ip}" in " ".join(proc.cmdline()):
                    return proc
            except psutil.Error:
                continue
        raise LookupError(f"no raylet of node {ip}")

    def wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        probe = "import ray; ray.init(address='auto'); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run([sys.executable, "-c", probe], check=False, env={"RAY_ADDRESS": self.address}, timeout=120)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster did not reach {count} live nodes")

    def stop(self) -> None:
        """Ends every process of the cluster's namespace, then the namespace itself."""
        for _ in range(3):
            procs = self.processes()
            if not procs:
                break
            for proc in procs:
                try:
                    proc.send_signal(signal.SIGKILL)
                except psutil.Error:
                    continue
            psutil.wait_procs(procs, timeout=10)
        if self.holder is not None and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
