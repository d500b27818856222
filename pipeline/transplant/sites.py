"""Intervention sites: granularity (attn / attn_released / ffn / block) -> module of decoder layer k.

This is the only place that knows Hugging Face module paths. XTransplant (paper Sec. 2) moves the
output of one module at the last prompt token:

Module paths per family live in :mod:`pipeline.models.layouts`; below, ``self_attn`` / ``mlp`` stand for the
family's attention and FFN modules.

* ``attn``  -- ``layers[k].self_attn``: first element of its output (after o_proj, before the
  residual add). The paper's equation: a_s^i replaces a_t^j.
* ``attn_released`` -- the attention transplant as the authors' released code performs it
  (``modelwrapper_attn/*wrapper.py``): their block wrapper stores the attention output tensor and
  then runs ``attn_output += args[0]`` in place, so the stored (later transplanted) vector is the
  post-attention residual stream h_s^i + a_s^i (decoder layer i's input hidden state plus its
  self-attention output). It is written over ``layers[j].self_attn``'s output at the last target
  prompt token, exactly like ``attn``; the layer then adds its own residual, so the stream there
  becomes h_t^j + h_s^i + a_s^i. The layer input is read with a forward pre-hook on the decoder
  layer (hidden_states passed positionally or as a keyword).
* ``ffn``   -- ``layers[k].mlp``: its output (before the residual add). The released FFN wrapper
  has no such aliasing, so ``ffn`` is both the paper's and the released variant.
* ``block`` -- ``layers[k]``: the decoder layer's output hidden state.

Architectures with sandwich norms (Gemma 2/3: ``post_attention_layernorm`` and
``post_feedforward_layernorm`` sit after ``self_attn`` / ``mlp`` and before the residual add):
the ``attn`` and ``ffn`` sites stay the modules' own outputs, i.e. *before* those norms; the norm
is then applied to the transplanted vector. ``attn_released``'s source vector stays the layer
input plus the raw self_attn output (not Gemma's own residual stream h + norm(a)), and is written
before the norm like ``attn``.

Hooks are registered only inside the context managers below, which always remove them: a leaked
hook would silently corrupt every later result.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.models.layouts import GRANULARITIES, check_granularity, check_layers, lens, resolve


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM, from its family's layout (:mod:`pipeline.models.layouts`).

    Raises:
        PipelineError: naming the model type and what is missing, before any work starts.
    """
    return resolve(model).layers


def lens_modules(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The final norm and the unembedding of a causal LM.

    Together they turn a hidden state into next-token logits: the "logit lens" of the case study
    (paper Fig. 8) applies them to every layer's output.

    Raises:
        PipelineError: naming the module that is missing.
    """
    return lens(model, resolve(model))


def _hidden(output, shape: tuple[int, int]) -> torch.Tensor:
    """The hidden-state tensor of a module output as [B, T, H] (a view).

    Attention returns (out, weights) and some layers tuples; OPT's ``fc2`` sees its layer's tokens
    flattened to [B * T, H], so a 2-D output is viewed as the layer input's (B, T).
    """
    hidden = output[0] if isinstance(output, tuple) else output
    return hidden.view(*shape, hidden.shape[-1]) if hidden.dim() == 2 else hidden


def _layer_input(args, kwargs) -> torch.Tensor:
    """[B, T, H] a decoder layer's input hidden state (passed positionally or as a keyword)."""
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(output, hidden: torch.Tensor):
    """``output`` with its hidden-state tensor replaced, same container type."""
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


@contextmanager
def capture_last(
    model: nn.Module, rows: torch.Tensor, positions: torch.Tensor
) -> Iterator[torch.Tensor]:
    """Captures every site's output of every layer at one position per selected row.

    One forward of the source prompts fills the whole activation bank of paper Sec. 2: the
    outputs of all N layers at every granularity at the last source token (for ``attn_released``
    the layer input plus the attention output, see the module docstring).

    Args:
        model: the causal LM.
        rows: [R] batch rows to capture (the source-prompt rows of a mixed batch).
        positions: [R] position of the last real token of each captured row.

    Yields:
        bank: [R, G, N, H] tensor (G = len(GRANULARITIES)), filled once the forward inside the block
        has run; index 1 follows :data:`pipeline.models.layouts.GRANULARITIES`.
    """
    sites = resolve(model)
    layers = sites.layers
    hidden = model.config.hidden_size
    param = next(model.parameters())
    bank = torch.zeros(len(rows), len(GRANULARITIES), len(layers), hidden, dtype=param.dtype, device=param.device)
    shapes: dict[int, tuple[int, int]] = {}  # layer -> (B, T) of the forward running through it
    outputs: dict[tuple[str, int], torch.Tensor] = {}  # (granularity, layer) -> [R, H]
    inputs: dict[int, torch.Tensor] = {}  # layer -> [R, H] its input hidden state

    def make_hook(granularity: str, k: int):
        def hook(_module, _args, output):
            outputs[(granularity, k)] = _hidden(output, shapes[k])[rows, positions]

        return hook

    def make_input_hook(k: int):
        def pre_hook(_module, args, kwargs):
            layer_input = _layer_input(args, kwargs)  # [B, T, H]
            shapes[k] = tuple(layer_input.shape[:2])
            inputs[k] = layer_input[rows, positions]

        return pre_hook

    with ExitStack() as stack:
        for k, layer in enumerate(layers):
            handle = layer.register_forward_pre_hook(make_input_hook(k), with_kwargs=True)
            stack.callback(handle.remove)
        for granularity in ("attn", "ffn", "block"):  # attn_released reads attn's module
            for k in range(len(layers)):
                if k not in sites.missing(granularity):  # a hybrid layer without that module: its slot stays 0
                    handle = sites.module(granularity, k).register_forward_hook(make_hook(granularity, k))
                    stack.callback(handle.remove)
        yield bank
    # the forward has run: one stack per granularity, one copy into the bank
    zero = bank.new_zeros((len(rows), hidden))
    column = {g: torch.stack([outputs.get((g, k), zero) for k in range(len(layers))]) for g in ("attn", "ffn", "block")}
    column["attn_released"] = torch.stack([inputs[k] for k in range(len(layers))]) + column["attn"]
    bank.copy_(torch.stack([column[g] for g in GRANULARITIES]).permute(2, 0, 1, 3))  # [G, N, R, H] -> [R, G, N, H]


@dataclass(frozen=True)
class Replacement:
    """Rows of a batch whose site output at one layer is overwritten at one position each.

    Attributes:
        rows: [R] batch row indices.
        positions: [R] sequence position replaced in each row (the last target prompt token).
        vectors: [R, H] the transplanted source vectors.
    """

    rows: torch.Tensor
    positions: torch.Tensor
    vectors: torch.Tensor


@contextmanager
def transplant(model: nn.Module, plan: Mapping[tuple[str, int], Replacement]) -> Iterator[None]:
    """Overwrites site outputs during the forwards run inside the block (paper Sec. 2, Eq. 1-2).

    ``plan[(granularity, target_layer)]`` says which rows get which vector at that site. The forward
    continues from the replaced value, so later layers and the KV cache of the replaced position
    see the transplant. The replacing hooks run before any forward hook already registered on the
    same module (``sharing.SharedLayers`` expands the rows of the last layer after them).
    """
    sites = resolve(model)
    layers = sites.layers
    shapes: dict[int, tuple[int, int]] = {}  # layer -> (B, T) of the forward running through it

    def make_hook(rep: Replacement, k: int):
        def hook(_module, _args, output):
            replaced = (output[0] if isinstance(output, tuple) else output).clone()
            _hidden(replaced, shapes[k])[rep.rows, rep.positions] = rep.vectors.to(replaced.dtype)  # through a view
            return _with_hidden(output, replaced)

        return hook

    def make_shape_hook(k: int):
        def pre_hook(_module, args, kwargs):
            shapes[k] = tuple(_layer_input(args, kwargs).shape[:2])

        return pre_hook

    with ExitStack() as stack:
        for (granularity, layer), rep in plan.items():
            check_layers([layer], len(layers), f"target layer {layer}")
            check_granularity(granularity)
            handle = layers[layer].register_forward_pre_hook(make_shape_hook(layer), with_kwargs=True)
            stack.callback(handle.remove)
            handle = sites.module(granularity, layer).register_forward_hook(make_hook(rep, layer), prepend=True)
            stack.callback(handle.remove)
        yield
