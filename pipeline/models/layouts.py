"""Where each model family keeps its decoder layers and the modules each granularity names.

The only place that knows Hugging Face module paths (pyvene and TransformerLens keep the same
kind of table). Paper Sec. 2 defines the three sites of decoder layer k: the self-attention
output a^k, the feed-forward output f^k (both *before* the residual add) and the layer's output
hidden state h^k. A :class:`Layout` names, per ``config.model_type``:

* ``layers``: the ``nn.ModuleList`` of decoder layers, as a dotted path from the causal LM;
* ``attn`` / ``ffn``: the attribute of a layer whose output is a^k / f^k (``block`` is the layer
  itself and needs neither). For MoE layers ``ffn`` is the whole sparse block (router + experts,
  shared expert included); for parallel layers (GPT-J, CodeGen, Falcon, Phi, GPT-NeoX with
  ``use_parallel_residual``) it is the MLP branch's output before the shared residual add; for
  OPT and XGLM, which have no MLP module, it is ``fc2``'s output (their last FFN projection);
* ``norm`` / ``head``: the final norm and the unembedding (the logit lens of paper Fig. 8);
* ``route``: how the engine runs the family's attention.
  ``kernel`` -- the shared-prefix kernel plugged in through transformers' ``AttentionInterface``
  (one copy of an instance's target prefix for all its config rows; :mod:`.attention`).
  ``cache`` -- the model's own attention and its own KV/state cache, one copy of the prefix per
  config row (:mod:`.native`): for classes that do not use the interface (BLOOM, Falcon, XGLM,
  MPT) and for hybrid layers whose state is not keys and values (LFM2's convolutions, Qwen3-Next's
  linear attention). Exact for the same reason ``generate()`` is; it costs prefix memory per row.

A family missing from the table is recognised by the common names (:data:`FALLBACK_LAYERS`,
:data:`FALLBACK_ATTN`, :data:`FALLBACK_FFN`) and runs on the ``cache`` route, the one that does
not depend on how its attention is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from pipeline.errors import PipelineError

ROUTES = ("kernel", "cache")

GRANULARITIES = ("attn", "ffn", "block", "attn_released")
"""Transplant sites (paper Sec. 2; hooked in ``pipeline/transplant/sites.py``): attn = the paper's
equation (a^k), attn_released = the authors' released code (layer input + attention output), ffn
(f^k), block (the decoder layer's output h^k)."""


def check_layers(layers: Sequence[int], n_layers: int, what: str) -> None:
    """Each of ``layers`` is a decoder layer of a model with ``n_layers`` (0-based; the paper counts
    from 1); else one line naming ``what`` (``source_layer=4``, ``grid.pairs: (0, 3)``)."""
    if not all(0 <= layer < n_layers for layer in layers):
        raise PipelineError(f"{what} out of range: the model has layers 0..{n_layers - 1}")


def check_granularity(name: str) -> str:
    """``name`` if it is one of :data:`GRANULARITIES`; the one check every entry point and the engine use."""
    if name not in GRANULARITIES:
        raise PipelineError(f"granularity '{name}' is not valid; valid: {', '.join(GRANULARITIES)}")
    return name


@dataclass(frozen=True)
class Layout:
    """Module paths of one model family (see the module docstring)."""

    layers: str = "model.layers"
    attn: str | None = "self_attn"
    ffn: str | None = "mlp"
    norm: str | None = "model.norm"
    head: str = "lm_head"
    route: str = "kernel"


LLAMA = Layout()
GPT2 = Layout(layers="transformer.h", attn="attn", norm="transformer.ln_f")

# model_type -> layout. Every entry is exercised by tests/test_families.py against the naive
# per-config reference; the README's family table is this table.
LAYOUTS: dict[str, Layout] = {
    **{
        name: LLAMA
        for name in (
            "llama", "mistral", "ministral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "gemma",
            "gemma2", "gemma3_text", "phi", "phi3", "olmo", "olmo2", "olmo3", "granite", "cohere", "cohere2",
            "starcoder2", "smollm3", "glm", "glm4", "exaone4", "helium", "apertus", "arcee", "seed_oss",
            "ernie4_5", "hunyuan_v1_dense", "gpt_oss", "deepseek_v2", "deepseek_v3", "stablelm",
        )
    },  # fmt: skip
    "granitemoe": Layout(ffn="block_sparse_moe"),
    "gpt2": GPT2,
    "gptj": GPT2,
    "codegen": GPT2,
    "gpt_neox": Layout(layers="gpt_neox.layers", attn="attention", norm="gpt_neox.final_layer_norm", head="embed_out"),
    "opt": Layout(layers="model.decoder.layers", ffn="fc2", norm="model.decoder.final_layer_norm"),
    "bloom": Layout(layers="transformer.h", attn="self_attention", norm="transformer.ln_f", route="cache"),
    "falcon": Layout(layers="transformer.h", attn="self_attention", norm="transformer.ln_f", route="cache"),
    "xglm": Layout(ffn="fc2", norm="model.layer_norm", route="cache"),
    "mpt": Layout(layers="transformer.blocks", attn="attn", ffn="ffn", norm="transformer.norm_f", route="cache"),
    "lfm2": Layout(ffn="feed_forward", norm="model.embedding_norm", route="cache"),
    "qwen3_next": Layout(route="cache"),
}

FALLBACK_LAYERS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "transformer.blocks")
FALLBACK_ATTN = ("self_attn", "attn", "self_attention", "attention")
FALLBACK_FFN = ("mlp", "feed_forward", "block_sparse_moe", "ffn")
FALLBACK_NORM = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm")


def _get(root: nn.Module, path: str | None) -> nn.Module | None:
    module = root
    for part in (path or "").split(".") if path else ():
        module = getattr(module, part, None)
        if module is None:
            return None
    return module if path and isinstance(module, nn.Module) else None


@dataclass(frozen=True)
class Sites:
    """The resolved sites of one loaded model.

    Attributes:
        model_type: ``config.model_type`` (what the user's error lines name).
        layout: the table entry (or the fallback's guess) it was resolved from.
        listed: whether ``model_type`` is in :data:`LAYOUTS` (tested) or was recognised by names.
        layers: the decoder layers.
        attn / ffn: per layer, the module whose output is a^k / f^k, or None where that layer has
            none (hybrid layers: LFM2's convolution layers have no attention).
    """

    model_type: str
    layout: Layout
    listed: bool
    layers: nn.ModuleList
    attn: tuple[nn.Module | None, ...]
    ffn: tuple[nn.Module | None, ...]

    @property
    def route(self) -> str:
        return self.layout.route

    def missing(self, granularity: str) -> list[int]:
        """Layers lacking the module ``granularity`` names (empty: every layer has it)."""
        if granularity == "block":
            return []
        modules = self.ffn if granularity == "ffn" else self.attn
        return [k for k, m in enumerate(modules) if m is None]

    def module(self, granularity: str, layer: int) -> nn.Module:
        """The module whose output ``granularity`` names in decoder layer ``layer``."""
        if granularity == "block":
            return self.layers[layer]
        module = (self.ffn if granularity == "ffn" else self.attn)[layer]
        if module is None:
            raise PipelineError(f"model type {self.model_type}: decoder layer {layer} has no {granularity} module")
        return module


def _model_type(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", type(model).__name__))


def resolve(model: nn.Module) -> Sites:
    """The sites of ``model`` from its family's layout, or from the common names for an unlisted one.

    Raises:
        PipelineError: one line naming the model type and what is missing (no decoder layers, or
            no attention/FFN module under any known name in any layer).
    """
    model_type = _model_type(model)
    listed = model_type in LAYOUTS
    if listed:
        layout = LAYOUTS[model_type]
    else:
        path = next((p for p in FALLBACK_LAYERS if isinstance(_get(model, p), nn.ModuleList)), None)
        if path is None:
            raise PipelineError(
                f"model type {model_type} ({type(model).__name__}): no decoder layers at any of "
                f"{', '.join(FALLBACK_LAYERS)}; add its layout to pipeline/models/layouts.py"
            )
        first = _get(model, path)[0]
        layout = Layout(
            layers=path,
            attn=next((a for a in FALLBACK_ATTN if _get(first, a) is not None), None),
            ffn=next((f for f in FALLBACK_FFN if _get(first, f) is not None), None),
            norm=next((n for n in FALLBACK_NORM if _get(model, n) is not None), None),
            route="cache",
        )
    layers = _get(model, layout.layers)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise PipelineError(f"model type {model_type} ({type(model).__name__}) has no decoder layers at {layout.layers}")
    return Sites(
        model_type=model_type,
        layout=layout,
        listed=listed,
        layers=layers,
        attn=tuple(_get(layer, layout.attn) for layer in layers),
        ffn=tuple(_get(layer, layout.ffn) for layer in layers),
    )


def unavailable(model_type: str, granularity: str, missing: list[int], n_layers: int) -> str:
    """The one-line refusal of a granularity whose module some decoder layers lack (hybrid layouts)."""
    shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
    return (
        f"model type {model_type}: granularity {granularity} is not available: decoder layers {shown} of "
        f"{n_layers} have no module for it; granularity block works on every layer"
    )


def lens(model: nn.Module, sites: Sites) -> tuple[nn.Module, nn.Module]:
    """The final norm and the unembedding of a causal LM (the logit lens, paper Fig. 8)."""
    if _get(model, "model.decoder.project_out") is not None:  # OPT-350m: hidden -> embedding width first
        raise PipelineError(f"model type {sites.model_type}: the logit lens does not cover project_out layers")
    norm, head = _get(model, sites.layout.norm), _get(model, sites.layout.head)
    for path, module in ((sites.layout.norm, norm), (sites.layout.head, head)):
        if module is None:
            raise PipelineError(
                f"model type {sites.model_type} has no final norm/unembedding at {path}; the logit lens needs both"
            )
    return norm, head


def loadable_implementation(config) -> str:
    """``sdpa`` if the config's causal-LM class accepts it, else ``eager`` (Gemma 2, gpt-oss, BLOOM,
    XGLM and MPT refuse sdpa; asking for it blindly makes ``from_pretrained`` raise)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    cls = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    return "sdpa" if cls is None or getattr(cls, "_supports_sdpa", False) else "eager"
