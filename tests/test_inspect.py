"""The case-study tool (``pipeline.inspect``, paper Fig. 8): logit lens vanilla vs transplanted.

The lens is checked against independent computations on the tiny model: the last layer's vanilla
lens is the model's own next-token distribution; a block transplant of source layer N-1 into
target layer j makes the lens at j the source prompt's own next-token distribution, and leaves
layers below j as vanilla; an attn_released transplant equals a hand-hooked forward with the source
layer's input plus attention output written over the target layer's attention output
(tests/reference.py). Hooks are gone afterwards. The CLI runs in-process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from reference import _source_vector, module_of

from pipeline.errors import PipelineError
from pipeline.inspect import lens_probs
from pipeline.inspect import main as inspect_main
from pipeline.models.layouts import GRANULARITIES
from pipeline.models.tiny import TinySpec, build_tiny

ROOT = Path(__file__).resolve().parents[2] / "shared" / "xtransplant-data"
PROMPT, SOURCE = "Wie heisst die Hauptstadt von Frankreich", "What is the capital of France"


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(TinySpec(n_layers=4))


def next_token_probs(model, tokenizer, text: str) -> torch.Tensor:
    """[V] the model's own distribution after ``text`` (a plain forward, no hooks)."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        return torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_vanilla_last_layer_is_the_models_own_prediction(tiny, granularity):
    model, tok = tiny
    probs = lens_probs(model, tok, PROMPT, SOURCE, granularity, source_layer=3, target_layer=1)
    assert probs.shape == (2, 4, model.config.vocab_size)
    torch.testing.assert_close(probs[0, -1], next_token_probs(model, tok, PROMPT), atol=1e-5, rtol=1e-4)
    # causal: a transplant at layer 1 cannot change layer 0 at the same position
    torch.testing.assert_close(probs[1, 0], probs[0, 0])
    assert not torch.allclose(probs[1, 1:], probs[0, 1:])


@pytest.mark.parametrize("target_layer", [0, 2])
def test_block_transplant_of_the_last_source_layer_reads_as_the_source_prediction(tiny, target_layer):
    model, tok = tiny
    probs = lens_probs(model, tok, PROMPT, SOURCE, "block", source_layer=3, target_layer=target_layer)
    expected = next_token_probs(model, tok, SOURCE)
    torch.testing.assert_close(probs[1, target_layer], expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probs[1, :target_layer], probs[0, :target_layer])


@pytest.mark.parametrize("source_layer,target_layer", [(3, 0), (1, 2)])
def test_attn_released_lens_equals_a_hand_hooked_forward(tiny, source_layer, target_layer):
    """Layer i's input + attention output (last source token) over layer j's attention output."""
    model, tok = tiny
    probs = lens_probs(model, tok, PROMPT, SOURCE, "attn_released", source_layer, target_layer)
    vector = _source_vector(model, torch.tensor([tok(SOURCE)["input_ids"]]), "attn_released", source_layer)

    def put(_m, _a, out):
        hidden = out[0].clone()
        hidden[0, -1] = vector
        return (hidden, *out[1:])

    outputs = []  # each decoder layer's output hidden state at the last prompt token
    handles = [module_of(model, "attn", target_layer).register_forward_hook(put)]
    handles += [layer.register_forward_hook(lambda _m, _a, out: outputs.append(out[0, -1].clone()))
                for layer in model.model.layers]
    try:
        with torch.inference_mode():
            model(input_ids=torch.tensor([tok(PROMPT)["input_ids"]]))
            expected = torch.softmax(model.lm_head(model.model.norm(torch.stack(outputs))).float(), dim=-1)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(probs[1], expected, atol=1e-5, rtol=1e-4)
    attn = lens_probs(model, tok, PROMPT, SOURCE, "attn", source_layer, target_layer)
    assert not torch.allclose(attn[1, target_layer:], probs[1, target_layer:])


def test_hooks_are_removed_and_outputs_unchanged(tiny):
    model, tok = tiny
    before = next_token_probs(model, tok, PROMPT)
    lens_probs(model, tok, PROMPT, SOURCE, "attn", source_layer=2, target_layer=0)
    lens_probs(model, tok, PROMPT, SOURCE, "attn_released", source_layer=2, target_layer=0)
    with pytest.raises(PipelineError, match="target_layer=4 out of range"):
        lens_probs(model, tok, PROMPT, SOURCE, "ffn", source_layer=0, target_layer=4)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    torch.testing.assert_close(next_token_probs(model, tok, PROMPT), before, atol=0, rtol=0)


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["pipeline.inspect", "model.device=cpu", *args])
    code = 0
    try:
        inspect_main()
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_table_json_and_png(tiny, tmp_path, monkeypatch, capsys):
    out, png = tmp_path / "case.json", tmp_path / "case.png"
    code, stdout, err = run_cli(monkeypatch, capsys, f"prompt={PROMPT}", f"source_prompt={SOURCE}",
                                "source_layer=3", "target_layer=1", "granularity=block", "top_k=3",
                                f"out={out}", f"out_png={png}")
    assert code == 0, err
    assert "source layer 3 -> target layer 1 (layers count from 0)" in stdout
    assert "vanilla" in stdout and "transplanted" in stdout
    case = json.loads(out.read_text())
    assert case["top_k"] == 3 and case["layers_count_from"] == 0 and case["granularity"] == "block"
    for side in ("vanilla", "transplanted"):
        assert len(case[side]) == 4 and all(len(layer) == 3 for layer in case[side])
        for layer in case[side]:
            probs = [e["prob"] for e in layer]
            assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    model, tok = tiny
    top1 = int(next_token_probs(model, tok, PROMPT).argmax())
    assert case["vanilla"][-1][0]["token_id"] == top1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".case.png.*"))


def test_cli_task_instance(monkeypatch, capsys):
    code, stdout, err = run_cli(monkeypatch, capsys, "task=xnli", f"task.root={ROOT}", "task.langs=[de]",
                                "task.limit=2", "instance=xnli-pilot-00001-de", "source_layer=3",
                                "target_layer=0", "top_k=2")
    assert code == 0, err
    assert "instance xnli-pilot-00001-de (de)" in stdout


@pytest.mark.parametrize("args,message", [
    (["task=xnli", f"task.root={ROOT}", "task.langs=[de]", "task.limit=2", "instance=xnli-pilot-09999-de"],
     "unknown instance 'xnli-pilot-09999-de' in task xnli (2 instances); valid ids include: "
     "xnli-pilot-00000-de, xnli-pilot-00001-de"),
    (["prompt=Hallo", "source_prompt=Hello", "target_layer=4"],
     "target_layer=4 out of range: the model has layers 0..3"),
    (["prompt=Hallo", "source_prompt=Hello", "source_layer=-1"], "source_layer=-1 out of range"),
    (["prompt=", "source_prompt=Hello"], "prompt is empty"),
    (["prompt=Hallo", "source_prompt=Hello", "granularity=mlp"], "granularity 'mlp' is not valid"),
    (["task=xnli", f"task.root={ROOT}", "prompt=Hallo", "instance=x"], "not both"),
    (["model=gpt9", "prompt=Hallo", "source_prompt=Hello"], "unknown model 'gpt9'"),
])
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, args, message):
    given = {a.split("=")[0] for a in args}
    layers = [f"{key}=0" for key in ("source_layer", "target_layer") if key not in given]
    code, _, err = run_cli(monkeypatch, capsys, *args, *layers)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
