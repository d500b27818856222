"""Submits the paper's runs (jobs/*.yaml) to a Ray cluster with the Ray Jobs API.

    python jobs/submit.py jobs/main.yaml --address http://HEAD:8265 [--only main-qwen2-xquad] [--dry-run]

Each job is one `python -m pipeline.sweep ...` entrypoint; the file's runtime_env (working_dir,
env vars) is shared by all its jobs. Sweeps resume, so resubmitting a job after a failure is safe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def load_jobs(path: Path) -> tuple[dict, list[dict]]:
    spec = yaml.safe_load(path.read_text())
    return spec.get("runtime_env", {}), spec["jobs"]


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

    client = JobSubmissionClient(args.address)
    for job in selected:
        job_id = client.submit_job(entrypoint=job["entrypoint"], runtime_env=runtime_env, submission_id=None)
        print(f"{job['name']}: submitted as {job_id}")


if __name__ == "__main__":
    main()
