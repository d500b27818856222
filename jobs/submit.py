"""Submits the paper's runs (jobs/*.yaml) to a Ray cluster with the Ray Jobs API.

    ray dashboard docker/cluster.yaml &          # an SSH tunnel to the head's dashboard (loopback there)
    RAY_AUTH_TOKEN=... python jobs/submit.py jobs/main.yaml --address http://127.0.0.1:8265 [--only NAME] [--dry-run]

Each job is one `python -m pipeline.sweep ...` entrypoint; the file's runtime_env (working_dir,
env vars) is shared by all its jobs. Sweeps resume, so resubmitting a job after a failure is safe.

The cluster demands token authentication (docker/cluster.yaml): the token is read from
``RAY_AUTH_TOKEN`` and sent with every request. It is refused over plain http to anything but
this machine (an SSH tunnel's local end); use https or the tunnel.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml


def load_jobs(path: Path) -> tuple[dict, list[dict]]:
    spec = yaml.safe_load(path.read_text())
    return spec.get("runtime_env", {}), spec["jobs"]


def auth_headers(address: str) -> dict[str, str]:
    """The Authorization header carrying ``RAY_AUTH_TOKEN``; exits on a missing token or clear text off this host."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        sys.exit("error: RAY_AUTH_TOKEN is not set; the cluster accepts authenticated requests only")
    url = urlsplit(address if "://" in address else f"http://{address}")
    if url.scheme == "http" and url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"error: --address {address} would send the token in clear text; reach the head through an SSH "
                 "tunnel (ray dashboard docker/cluster.yaml, then --address http://127.0.0.1:8265) or use https")
    return {"Authorization": f"Bearer {token}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--address", default=None, help="Ray dashboard address (default: RAY_ADDRESS)")
    parser.add_argument("--only", action="append", default=[], help="job name(s) to submit")
    parser.add_argument("--dry-run", action="store_true", help="print the entrypoints only")
    args = parser.parse_args()
    runtime_env, jobs = load_jobs(args.file)
    names = {j["name"] for j in jobs}
    unknown = [n for n in args.only if n not in names]
    if unknown:
        sys.exit(f"error: unknown job {unknown[0]!r} in {args.file}; valid: {', '.join(sorted(names))}")
    selected = [j for j in jobs if not args.only or j["name"] in args.only]
    if args.dry_run:
        for job in selected:
            print(f"{job['name']}: {job['entrypoint']}")
        return
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(args.address, headers=auth_headers(args.address or os.environ.get("RAY_ADDRESS", "")))
    for job in selected:
        job_id = client.submit_job(entrypoint=job["entrypoint"], runtime_env=runtime_env, submission_id=None)
        print(f"{job['name']}: submitted as {job_id}")


if __name__ == "__main__":
    main()
