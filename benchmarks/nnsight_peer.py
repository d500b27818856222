"""An XTransplant sweep written the way nnsight's documentation recommends (the benchmark's peer).

What a skilled user of the field's intervention library writes for the paper's grid (issue 13),
with nnsight 0.8 (``pip install -e '.[bench]'``), following its documentation:

- the model is wrapped once: ``TransformersModel(hf_model, tokenizer=tok, task="text-generation")``
  (0.8's replacement of the deprecated ``LanguageModel``; it left-pads decoder batches and
  derives ``position_ids`` from the mask);
- **source activations from one trace per instance** (and granularity):
  ``with model.trace(source_ids):`` saves the module output of every source layer the grid
  needs at the last source token;
- **one ``generate()`` per batch of configs, one ``tracer.invoke(target_ids)`` per config**
  ("batching with invokers"); a batch holds configs of one instance, so its rows need no
  padding (left padding would apply otherwise). Each invoke overwrites its own target layer's
  module output at the last prompt token (``output[:, -1, :]``) on the first generation step
  only (a module's ``.output`` outside ``tracer.iter`` is its first call); greedy decoding with
  the checkpoint's settings and ``do_sample=False``; the ids are read from ``tracer.result`` in
  a trailing empty invoke, as the docs advise;
- no prefix reuse: every config row prefills its whole target prompt.

Prompts are handed over as token ids from the same tokenizer the engine and the reference use,
so all three read identical inputs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch


def _site(model, granularity: str, layer: int):
    """The nnsight envoy of a granularity's module at a layer (LLaMA/Gemma layout)."""
    block = model.model.layers[layer]
    return {"attn": block.self_attn, "ffn": block.mlp, "block": block}[granularity]


def _hidden(output):
    """The hidden-state tensor of a module output (attention returns (output, weights))."""
    return output[0] if isinstance(output, tuple) else output


class NnsightPeer:
    """Runs vanilla and transplant configs with nnsight, batch by batch."""

    def __init__(self, hf_model, tokenizer, max_new_tokens: int, eos_token_ids: Sequence[int], batch: int = 64):
        from nnsight import TransformersModel

        self.model = TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation")
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.eos = list(eos_token_ids)
        self.batch = batch

    def source_vectors(self, source_ids: list[int], granularity: str, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """{layer: [H]} module outputs at the last source token, from one trace."""
        model = self.model
        with model.trace(source_ids):
            saved = list().save()
            for layer in sorted(set(layers)):
                saved.append(_hidden(_site(model, granularity, layer).output)[0, -1].clone())
        return dict(zip(sorted(set(layers)), saved, strict=True))

    def _generate(self, rows: list[tuple[list[int], str | None, int | None, torch.Tensor | None]]) -> list[list[int]]:
        """One ``generate()`` over rows of (target ids, granularity, target layer, source vector)."""
        model = self.model
        with model.generate(max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=self.eos,
                            pad_token_id=self.tokenizer.pad_token_id) as tracer:
            for target_ids, granularity, layer, vector in rows:
                with tracer.invoke(target_ids):
                    if granularity is not None:
                        _hidden(_site(model, granularity, layer).output)[:, -1, :] = vector
            with tracer.invoke():
                result = tracer.result.save()
        width = max(len(r[0]) for r in rows)  # left-padded prompts: new tokens start here
        out = []
        for row in result[:, width:].tolist():
            stop = next((k for k, t in enumerate(row) if t in self.eos), len(row))
            out.append(row[:stop])
        return out

    def batches(self, configs) -> list[list]:
        """Configs of one instance per ``generate()`` (one prompt length: no padding), ``batch`` at most."""
        by_instance: dict[int, list] = {}
        for c in configs:
            by_instance.setdefault(c.instance, []).append(c)
        step = self.batch
        return [group[k : k + step] for group in by_instance.values() for k in range(0, len(group), step)]

    def run(self, tokens: Sequence[tuple[list[int], list[int]]], configs) -> tuple[dict, dict]:
        """Ids of every config (``pipeline.transplant.engine.Config``) and the seconds spent in each phase.

        ``tokens[n]`` is instance n's (source ids, target ids). Configs are batched per instance
        (:meth:`batches`), as a user looping over instances would.
        """
        seconds = {"source_traces": 0.0, "generate": 0.0}
        start = time.perf_counter()
        vectors: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
        for c in configs:
            if c.granularity is not None and (c.instance, c.granularity) not in vectors:
                layers = [d.source_layer for d in configs if (d.instance, d.granularity) == (c.instance, c.granularity)]
                vectors[(c.instance, c.granularity)] = self.source_vectors(tokens[c.instance][0], c.granularity, layers)
        seconds["source_traces"] = time.perf_counter() - start
        ids = {}
        start = time.perf_counter()
        for chunk in self.batches(configs):
            rows = [(tokens[c.instance][1], c.granularity, c.target_layer,
                     None if c.granularity is None else vectors[(c.instance, c.granularity)][c.source_layer])
                    for c in chunk]
            for c, got in zip(chunk, self._generate(rows), strict=True):
                ids[c] = got
        seconds["generate"] = time.perf_counter() - start
        return ids, seconds
