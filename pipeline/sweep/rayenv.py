"""Ray, imported once its environment is set: the local cluster a sweep starts is private to the driver.

The local cluster a sweep starts (no ``RAY_ADDRESS``) is private to the driver:

* loopback only. ``ray.init(_node_ip_address="127.0.0.1")`` and ``ray start --node-ip-address``
  both replace a loopback address by the machine's reachable one, so every Ray process listened
  on all interfaces. Ray's single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the
  switch Ray itself turns off on macOS and Windows) gives the node 127.0.0.1; GCS, raylet, object
  manager, workers, agents and the metrics servers then all bind loopback.
* token authentication on, with a fresh per-run token in the environment (``RAY_AUTH_MODE=token``
  and ``RAY_AUTH_TOKEN``, inherited by the cluster's processes); Ray's warning about turning it on
  by default is not printed and no token file is written to the home directory.
* it dies with the driver: Ray starts GCS and raylet with the kernel's parent-death signal, and
  the worker actors are owned by the driver's job; the pool is also shut down explicitly at the
  end of every run (actors killed, then ``ray.shutdown()``).

Ray reads these switches once, when it is imported, so they are set here before ``import ray``;
a user's own ``RAY_*`` settings win, and under ``ray job submit`` (``RAY_ADDRESS`` set) nothing is
changed: the sweep joins that cluster as it is.
"""

from __future__ import annotations

import os
import secrets
import sys


def _private_local_cluster_environment() -> bool:
    """Loopback and token authentication for a local cluster started by this process (see above).

    Returns:
        Whether Ray sees these settings: False when Ray was imported before this module without
        them (the environment is then left alone, so the process does not mix two auth modes).
    """
    if os.environ.get("RAY_ADDRESS"):
        return True
    if "ray" in sys.modules:
        return os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0"
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return True


PRIVATE_LOCAL_CLUSTER = _private_local_cluster_environment()


PRIVATE_LOCAL_CLUSTER = _private_local_cluster_environment()

import ray  # noqa: E402  (after the environment above: Ray reads it at import)

__all__ = ["PRIVATE_LOCAL_CLUSTER", "ray"]
