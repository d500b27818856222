"""Bad input through the real command line: one ``error:`` line, exit status 2, nothing written.

Each row is a ``python -m pipeline.sweep ... cluster=inprocess`` process on the tiny model (the
README's promise is about the command a user types, so no in-process shortcut). The processes of
the table start together in a module fixture (each spends its time importing torch), and every row
is then checked on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sweeps import REPO, write_task

# (case id, overrides ({tmp}: the case's directory), what the one error line must contain ("|" separates parts))
PAIR = "is not a [source_layer, target_layer] pair of integers"
CASES = [
    ("pairs-float", ["grid=pairs", "grid.pairs=[[0.5,1]]"], "grid.pairs=[[0.5,1]]; Value 0.5 (float) is incompatible with type hint 'int'"),
    ("pairs-float-high", ["grid=pairs", "grid.pairs=[[1.9,2]]"], "Value 1.9 (float) is incompatible|full_key: grid.pairs[0]"),
    ("pairs-bool", ["grid=pairs", "grid.pairs=[[true,1]]"], f"grid.pairs: [True, 1] {PAIR}"),
    ("pairs-missing", ["grid=pairs"], "grid=pairs needs grid.pairs=[[i,j],...] with at least one pair"),
    ("pairs-empty", ["grid=pairs", "grid.pairs=[]"], "grid=pairs needs grid.pairs=[[i,j],...] with at least one pair"),
    ("pairs-three", ["grid=pairs", "grid.pairs=[[0,1,2]]"], f"grid.pairs: [0, 1, 2] {PAIR}"),
    ("pairs-word", ["grid=pairs", "grid.pairs=[[a,1]]"], "Value 'a' (str) is incompatible with type hint 'int'"),
    ("pairs-out-of-range", ["grid=pairs", "grid.pairs=[[0,3]]"], "grid.pairs: (0, 3) out of range: the model has layers 0..2"),
    ("out-dir-is-file", ["out_dir={tmp}/afile"], "out_dir {tmp}/afile is a file, not a directory"),
    ("out-dir-below-file", ["out_dir={tmp}/afile/sub"], "out_dir {tmp}/afile/sub lies below {tmp}/afile, which is a file"),
    ("out-dir-unwritable", ["out_dir={unwritable}/out"], "out_dir {unwritable}/out"),
    ("cluster-num-workers-zero", ["cluster.num_workers=0"], "cluster.num_workers must be >= 1, got 0"),
    ("cluster-num-workers-word", ["cluster.num_workers=two"], "Value 'two' of type 'str' could not be converted to Integer; full_key: cluster.num_workers"),
    ("type-of-a-swept-value", ["max_new_tokens=2,x"], "Error merging override max_new_tokens=x"),
    ("not-an-override", ["granularity"], "bad option 'granularity'"),
    ("flag-after-overrides", ["-m", "shard_size=2"], "unrecognized arguments: shard_size=2 (Hydra's flags"),
    ("misspelled-key", ["granulrity=ffn"], "unknown config key 'granulrity'; valid: |, granularity, grid, "),
    ("misspelled-key-plus", ["+granulrity=ffn"], "unknown config key 'granulrity'; valid:"),
    ("misspelled-nested-key", ["cluster.num_worker=2"], "unknown config key 'cluster.num_worker' under 'cluster'; |, num_workers"),
    ("misspelled-task-key-plus", ["+task.pathh=x.jsonl"], "task jsonl: unknown key 'pathh'; valid keys: name, path, groups"),
]  # fmt: skip


def _unwritable(base: Path) -> Path:
    """A directory this user cannot create entries in (root ignores permission bits: use /sys)."""
    if os.geteuid() == 0:
        return Path("/sys")
    locked = base / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Runs every case of the table (a few processes at a time); case id -> (proc, directory, unwritable)."""
    jobs = {}
    for case_id, overrides, _ in CASES:
        tmp = tmp_path_factory.mktemp(case_id)
        task = write_task(tmp / "task.jsonl", n=2)
        (tmp / "afile").write_text("a user's file\n")
        unwritable = _unwritable(tmp)
        args = ["cluster=inprocess", "model.tiny.n_layers=3", "max_new_tokens=2", "task=jsonl", f"task.path={task}",
                f"out_dir={tmp}/out"]  # fmt: skip
        args += [o.format(tmp=tmp, unwritable=unwritable) for o in overrides]
        jobs[case_id] = (args, tmp, unwritable)

    def launch(args):
        return subprocess.run([sys.executable, "-m", "pipeline.sweep", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        procs = dict(zip(jobs, pool.map(launch, (args for args, _, _ in jobs.values())), strict=True))
    return {case_id: (procs[case_id], tmp, unwritable) for case_id, (_, tmp, unwritable) in jobs.items()}


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case_id,overrides,message", CASES, ids=[c[0] for c in CASES])
def test_one_error_line_exit_2_nothing_written(outcomes, case_id, overrides, message):
    proc, tmp, unwritable = outcomes[case_id]
    expected = message.format(tmp=tmp, unwritable=unwritable).split("|")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert all(part in lines[0] for part in expected), lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp / "out").exists()
    assert _tree(tmp) == {"afile": b"a user's file\n", "task.jsonl": (tmp / "task.jsonl").read_bytes()}
