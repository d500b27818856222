"""``python -m pipeline.inspect``: the case study of paper Fig. 8, a logit lens of one transplant.

    python -m pipeline.inspect 'prompt="Wie heißt die Hauptstadt von Frankreich?"' \
        'source_prompt="What is the capital of France?"' source_layer=3 target_layer=0 granularity=block
    python -m pipeline.inspect model=qwen2 task=xnli task.root=../shared/xtransplant-data \
        instance=xnli-pilot-00000-de source_layer=27 target_layer=0 granularity=attn out=case.json out_png=case.png

For one instance and one (source layer i, target layer j) at one granularity, every decoder
layer's output hidden state at the last target prompt token goes through the final norm and the
unembedding (the "logit lens"), once vanilla and once with the source vector transplanted at
target layer j (paper Sec. 2). The top-k tokens per layer are printed as a table, and optionally
written as JSON and drawn as a figure. Layers count from 0 (the paper counts from 1). Every
granularity of the sweep works, ``attn_released`` (the authors' released attention transplant,
``pipeline/transplant/sites.py``) included; its source vector comes from the same single source forward.
"""

from __future__ import annotations

import logging

import os
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Optional

import hydra
from hydra.core.config_store import ConfigStore
import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn
from transformers import PreTrainedTokenizerBase

from pipeline.cli import CONF_DIR, config_errors, plain, run_app
from pipeline.models.config import ModelSchema, model_spec
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.models import load_model
from pipeline.models.layouts import GRANULARITIES, check_granularity, check_layers
from pipeline.models.prompts import prompt_ids
from pipeline.store import Store
from pipeline.transplant.sites import Replacement, capture_last, decoder_layers, lens_modules, transplant
from pipeline.tasks import load_task

LAYER_AXIS = "layer (counted from 0)"
BLOCK = GRANULARITIES.index("block")

log = logging.getLogger(__name__)


def _ids(tokenizer: PreTrainedTokenizerBase, text: str, what: str, device: torch.device) -> torch.Tensor:
    """[1, T] ids, tokenized as the sweep's engine tokenizes (:func:`pipeline.models.prompts.prompt_ids`)."""
    return torch.tensor([prompt_ids(tokenizer, text, what)], device=device)


@torch.inference_mode()
def lens_probs(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompt: str, source_prompt: str,
    granularity: str, source_layer: int, target_layer: int,
) -> torch.Tensor:
    """Next-token distributions read off every layer at the last target prompt token.

    One forward of the source prompt captures the source vector (module ``granularity`` of
    ``source_layer`` at the last source token); one forward of the target prompt, twice in a batch
    of two, gives row 0 vanilla and row 1 with that vector in place of the same module's output of
    ``target_layer`` at the last prompt token. Each layer's output there is decoded through the
    final norm and the unembedding.

    Returns:
        probs: [2, N, V] float32; index 0 vanilla, 1 transplanted; N decoder layers.

    Raises:
        PipelineError: an unknown granularity, a layer out of range, an empty prompt.
    """
    check_granularity(granularity)
    n_layers = len(decoder_layers(model))
    for name, layer in (("source_layer", source_layer), ("target_layer", target_layer)):
        check_layers([layer], n_layers, f"{name}={layer}")
    norm, head = lens_modules(model)
    device = next(model.parameters()).device
    source = _ids(tokenizer, source_prompt, "source_prompt", device)  # [1, S]
    target = _ids(tokenizer, prompt, "prompt", device).repeat(2, 1)  # [2, T]
    last_source = torch.tensor([source.shape[1] - 1], device=device)
    last_target = torch.full((2,), target.shape[1] - 1, device=device)
    decoder = model.get_decoder()
    with capture_last(model, torch.tensor([0], device=device), last_source) as source_bank:
        decoder(input_ids=source, use_cache=False)
    vector = source_bank[:, GRANULARITIES.index(granularity), source_layer]  # [1, H]
    plan = {(granularity, target_layer): Replacement(
        rows=torch.tensor([1], device=device), positions=last_target[1:], vectors=vector)}
    # transplant first: its hook runs before the capture's on the same module, so a block
    # transplant is seen by the capture of layer j.
    with transplant(model, plan), capture_last(model, torch.arange(2, device=device), last_target) as bank:
        decoder(input_ids=target, use_cache=False)
    hidden = bank[:, BLOCK]  # [2, N, H] each layer's output hidden state
    return torch.softmax(head(norm(hidden)).float(), dim=-1)  # [2, N, V]


def top_tokens(probs: torch.Tensor, tokenizer: PreTrainedTokenizerBase, k: int) -> list[list[dict[str, Any]]]:
    """Per layer, the k most probable tokens: [{token_id, token (decoded), prob}] best first."""
    values, ids = probs.topk(k, dim=-1)  # [N, k]
    return [
        [{"token_id": int(i), "token": tokenizer.decode([int(i)]), "prob": float(p)} for p, i in zip(pv, iv)]
        for pv, iv in zip(values.tolist(), ids.tolist())
    ]


def case_study(cfg: DictConfig) -> dict[str, Any]:
    """The configured case: instance, pair, and per-layer top-k tokens vanilla vs transplanted."""
    spec = model_spec(cfg.model)
    granularity = str(cfg.granularity)
    check_granularity(granularity)
    source_layer, target_layer, top_k = cfg.source_layer, cfg.target_layer, cfg.top_k  # ints, by the schema
    if top_k < 1:
        raise PipelineError(f"top_k must be >= 1, got {top_k}")
    n_layers = spec.tiny.n_layers if spec.tiny is not None else None
    for name, layer in (("source_layer", source_layer), ("target_layer", target_layer)):
        if n_layers is not None:  # early, before loading
            check_layers([layer], n_layers, f"{name}={layer}")
    case = _case_input(cfg)
    loaded = load_model(spec)
    probs = lens_probs(loaded.model, loaded.tokenizer, case["prompt"], case["source_prompt"],
                       granularity, source_layer, target_layer)
    top_k = min(top_k, probs.shape[-1])
    return {
        **case, "model": spec.name, "granularity": granularity, "source_layer": source_layer,
        "target_layer": target_layer, "top_k": top_k, "layers_count_from": 0,
        "vanilla": top_tokens(probs[0], loaded.tokenizer, top_k),
        "transplanted": top_tokens(probs[1], loaded.tokenizer, top_k),
    }


@dataclass
class InspectSchema:
    """The schema of ``conf/inspect.yaml`` (ConfigStore ``inspect_schema``); ``task`` is the task's own."""

    model: ModelSchema = MISSING
    task: Any = None
    prompt: Optional[str] = None  # noqa: UP045  (OmegaConf reads typing.Optional)
    source_prompt: Optional[str] = None  # noqa: UP045
    instance: Optional[str] = None  # noqa: UP045
    source_layer: int = MISSING
    target_layer: int = MISSING
    granularity: str = MISSING
    top_k: int = MISSING
    out: Optional[str] = None  # noqa: UP045
    out_png: Optional[str] = None  # noqa: UP045


ConfigStore.instance().store(name="inspect_schema", node=InspectSchema)


def _case_input(cfg: DictConfig) -> dict[str, Any]:
    """{instance_id, lang, prompt, source_prompt}: given directly, or instance ``instance`` of ``task=``."""
    if cfg.get("task") is None:
        if cfg.instance is not None:
            raise PipelineError("instance= needs task=NAME (e.g. task=xnli task.root=DIR instance=ID)")
        for name in ("prompt", "source_prompt"):
            if cfg[name] is None or not str(cfg[name]).strip():
                raise PipelineError(f"{name} is empty (give prompt= and source_prompt=, or task=NAME instance=ID)")
        return {"instance_id": None, "lang": None, "prompt": str(cfg.prompt), "source_prompt": str(cfg.source_prompt)}
    if cfg.prompt is not None or cfg.source_prompt is not None:
        raise PipelineError("give either prompt= and source_prompt=, or task= with instance=, not both")
    task = load_task(plain(cfg.task))
    instances = task.instances()
    if cfg.instance is None or not str(cfg.instance).strip():
        raise PipelineError(f"task {task.name} needs instance=ID, e.g. {', '.join(x.id for x in instances[:3])}")
    wanted = str(cfg.instance)
    found = next((x for x in instances if x.id == wanted), None)
    if found is None:
        few = ", ".join(x.id for x in instances[:5]) or "(none: the task yields no instances)"
        raise PipelineError(f"unknown instance '{wanted}' in task {task.name} ({len(instances)} instances); "
                            f"valid ids include: {few}")
    return {"instance_id": found.id, "lang": found.lang, "prompt": found.prompt, "source_prompt": found.source_prompt}


def _cell(entry: dict[str, Any]) -> str:
    return f"{entry['token']!r} {entry['prob']:.2f}"


def format_table(case: dict[str, Any]) -> str:
    """The readable table: one line per layer, vanilla top-k beside transplanted top-k."""
    cells = {side: [" ".join(_cell(e) for e in layer) for layer in case[side]] for side in ("vanilla", "transplanted")}
    width = max(len("vanilla"), *(len(c) for c in cells["vanilla"]))
    what = f"instance {case['instance_id']} ({case['lang']})" if case["instance_id"] else "prompt given directly"
    lines = [
        f"model: {case['model']}  granularity: {case['granularity']}  source layer {case['source_layer']} -> "
        f"target layer {case['target_layer']} (layers count from 0)  {what}",
        f"logit lens at the last prompt token: top-{case['top_k']} tokens (probability) per layer",
        f"{'layer':>7}  {'vanilla':<{width}}  transplanted",
    ]
    for layer, (vanilla, moved) in enumerate(zip(cells["vanilla"], cells["transplanted"])):
        mark = "j" if layer == case["target_layer"] else " "
        lines.append(f"{mark} {layer:>5}  {vanilla:<{width}}  {moved}")
    lines.append("j = target layer; the last layer's row is the model's own next-token distribution")
    return "\n".join(lines)


def draw(case: dict[str, Any], path: Path) -> Path:
    """Two panels (vanilla, transplanted): layers (from 0) x top-k ranks, token text, colour = probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n, k = len(case["vanilla"]), case["top_k"]
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 2.6 * k, 1.2 + 0.42 * n), sharey=True, squeeze=False)
    for ax, side in zip(axes[0], ("vanilla", "transplanted")):
        probs = [[e["prob"] for e in layer] for layer in case[side]]
        image = ax.imshow(probs, origin="lower", cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for y, layer in enumerate(case[side]):
            for x, entry in enumerate(layer):
                ax.text(x, y, repr(entry["token"])[1:-1][:12], ha="center", va="center", fontsize=8,
                        color="white" if entry["prob"] > 0.6 else "black")
        ax.set_xticks(range(k), [f"top-{r + 1}" for r in range(k)])
        ax.set_yticks(range(n))
        ax.set_title(side if side == "vanilla" else
                     f"transplanted: {case['granularity']} i={case['source_layer']} -> j={case['target_layer']} (red)")
    axes[0][0].set_ylabel(LAYER_AXIS)
    j = case["target_layer"]
    axes[0][1].add_patch(Rectangle((-0.5, j - 0.5), k, 1, fill=False, edgecolor="red", linewidth=1.5))
    fig.colorbar(image, ax=axes[0].tolist(), label="probability", shrink=0.8)
    what = case["instance_id"] or "prompt given directly"
    fig.suptitle(f"logit lens at the last prompt token - {case['model']}, {what}", fontsize=10, y=1.04)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


@hydra.main(config_path=str(CONF_DIR), config_name="inspect", version_base=None)
@exit_on_user_error
def _main(cfg: DictConfig) -> None:
    with config_errors():
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        case = case_study(cfg)
    print(format_table(case))
    if cfg.out:
        out = Path(str(cfg.out))
        Store.open(out.parent).write_json(out.name, case)  # atomically, as every file we write
        log.info("wrote %s", cfg.out)
    if cfg.out_png:
        log.info("wrote %s", draw(case, Path(str(cfg.out_png))))


@exit_on_user_error
def main() -> None:
    run_app(_main, None, config_name="inspect")


if __name__ == "__main__":
    main()
