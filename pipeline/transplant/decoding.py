"""Greedy decoding as ``model.generate(do_sample=False)`` decodes: the checkpoint's logits processors.

The authors decode every config with ``model.generate(..., max_new_tokens=20, do_sample=False)``
(``casual_attempt.py``, ``transplant_*.py``, ``UpperBound/*.py``). ``generate`` still applies the
greedy-affecting logits processors named in the checkpoint's ``generation_config.json``:
Qwen2-7B-Instruct, for one, ships ``repetition_penalty: 1.05``. With ``decoding=checkpoint`` (the
default) the engine applies the same processors to each config row, so its greedy choice is the
one ``generate`` makes; ``decoding=plain`` is pure argmax of the model's logits.

Supported (Hugging Face's own classes from ``transformers.generation.logits_process``, built and
ordered as ``GenerationMixin._get_logits_processor`` does): ``repetition_penalty``,
``no_repeat_ngram_size``, ``bad_words_ids``, ``min_length`` (counts the prompt, as HF does),
``min_new_tokens``, ``remove_invalid_values``, ``suppress_tokens``, ``begin_suppress_tokens``,
``renormalize_logits`` (monotone per row, applied anyway for bit-exact ties). Sampling warpers
(temperature, top_k, top_p, ...) do nothing under ``do_sample=False`` and are ignored, as in HF.
Any other field that would change what ``generate(do_sample=False)`` returns (beam search,
contrastive search, sequence_bias, forced tokens, ...) is refused when the engine starts.

Each row's processor input is what ``generate`` would see for that row alone: its target prompt
ids (for a transplant row, the target prompt's; the transplant changes activations, not ids) plus
the ids it generated so far. The rows of a chunk keep these ids left-padded to one width with a
*sentinel* id, the vocabulary size, that no token has: the processors that read ids (repetition
penalty, n-gram and bad-word bans) then run once over all rows, on scores with an extra sentinel
column at -inf (a penalised or banned sentinel changes nothing: no n-gram or bad word contains it,
and it ends below every token). The three that read the history's *length* (``min_length``,
``min_new_tokens``, ``begin_suppress_tokens``) run once per group of rows whose prompts have the
same length, on that group's unpadded ids. All in HF's own order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    InfNanRemoveLogitsProcessor,
    LogitNormalization,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
)

from pipeline.errors import PipelineError

DECODING_MODES = ("checkpoint", "plain")
"""checkpoint: the generation config's greedy processors (the authors' generate); plain: argmax."""

# Field -> values meaning "not set" (HF's global defaults and None).
SUPPORTED: dict[str, tuple] = {
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "remove_invalid_values": (None, False),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "renormalize_logits": (None, False),
}

UNSUPPORTED: dict[str, tuple] = {
    "num_beams": (None, 1),  # beam search instead of greedy
    "num_beam_groups": (None, 1),
    "penalty_alpha": (None, 0, 0.0),  # contrastive search (with top_k > 1)
    "dola_layers": (None,),
    "constraints": (None,),
    "force_words_ids": (None,),
    "sequence_bias": (None,),
    "guidance_scale": (None, 1, 1.0),
    "encoder_repetition_penalty": (None, 1.0),  # decoder-only: penalises the prompt ids
    "encoder_no_repeat_ngram_size": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "exponential_decay_length_penalty": (None,),
    "watermarking_config": (None,),
    "stop_strings": (None,),
    "token_healing": (None, False),
}


def _is_set(value: Any, neutral: tuple) -> bool:
    return not any(value is n or (n is not None and value == n) for n in neutral)


def greedy_settings(generation_config: GenerationConfig | None) -> dict[str, Any]:
    """The supported greedy-affecting fields a generation config sets (empty when None).

    Raises:
        PipelineError: naming every set field that ``generate(do_sample=False)`` would honour and
            this engine does not implement, with the way out (``decoding=plain``).
    """
    if generation_config is None:
        return {}
    unsupported = [
        f"{name}={getattr(generation_config, name)!r}"
        for name, neutral in UNSUPPORTED.items()
        if _is_set(getattr(generation_config, name, None), neutral)
    ]
    if unsupported:
        raise PipelineError(
            f"the checkpoint's generation_config sets {', '.join(unsupported)}, which changes greedy "
            "decoding and is not implemented by the engine; run with decoding=plain (pure argmax, "
            f"the generation config ignored). Supported: {', '.join(SUPPORTED)}"
        )
    return {
        name: getattr(generation_config, name)
        for name, neutral in SUPPORTED.items()
        if _is_set(getattr(generation_config, name, None), neutral)
    }


def check_checkpoint(path: str, revision: str | None, mode: str) -> dict[str, Any]:
    """The greedy settings of a checkpoint's ``generation_config.json``, read without the weights.

    For the driver, so an unsupported setting is refused before any work; a checkpoint without
    the file has no settings (the engine still checks the loaded model's own generation config).

    Raises:
        PipelineError: an invalid ``mode`` or an unsupported setting (:func:`greedy_settings`).
    """
    if mode not in DECODING_MODES:
        raise PipelineError(f"decoding '{mode}' is not valid; valid: {', '.join(DECODING_MODES)}")
    if mode == "plain":
        return {}
    try:
        config = GenerationConfig.from_pretrained(path, revision=revision)
    except OSError:
        return {}
    return greedy_settings(config)


LENGTH_DEPENDENT = ("min_length", "min_new_tokens", "begin_suppress_tokens")
"""Settings whose processor reads the length of the history, not only its ids."""


class GreedyProcessors:
    """The checkpoint's greedy processors, applied per row of a lockstep chunk.

    Args:
        settings: the supported fields that are set (:func:`greedy_settings`).
        eos_token_ids: the engine's EOS ids (``generate``'s ``eos_token_id``), used by
            min_length / min_new_tokens / bad_words_ids as in HF.
        device: where the processors' tensors live.
    """

    def __init__(self, settings: dict[str, Any], eos_token_ids: Sequence[int], device: torch.device):
        self.settings = dict(settings)
        self.eos = torch.tensor(sorted(eos_token_ids), dtype=torch.long).to(device)
        self.device = device
        self._lists: dict[int, list[tuple[str, Any]]] = {}
        self.for_prompt_length(1)  # fail now on malformed values, not mid-sweep
        self.by_length = any(name in self.settings for name in LENGTH_DEPENDENT)

    @classmethod
    def from_model(
        cls, model: torch.nn.Module, mode: str, eos_token_ids: Sequence[int], device: torch.device
    ) -> GreedyProcessors | None:
        """The processors of ``model.generation_config`` under ``mode``; None when nothing applies."""
        if mode not in DECODING_MODES:
            raise PipelineError(f"decoding '{mode}' is not valid; valid: {', '.join(DECODING_MODES)}")
        if mode == "plain":
            return None
        settings = greedy_settings(getattr(model, "generation_config", None))
        return cls(settings, eos_token_ids, device) if settings else None

    def for_prompt_length(self, n: int) -> list[tuple[str, Any]]:
        """(setting, HF processor) for a prompt of ``n`` ids, in ``_get_logits_processor``'s order."""
        if n in self._lists:
            return self._lists[n]
        s, eos, device = self.settings, self.eos, self.device
        procs: list[tuple[str, Any]] = []
        try:
            if "repetition_penalty" in s:
                procs.append(("repetition_penalty", RepetitionPenaltyLogitsProcessor(float(s["repetition_penalty"]))))
            if "no_repeat_ngram_size" in s:
                procs.append(("no_repeat_ngram_size", NoRepeatNGramLogitsProcessor(int(s["no_repeat_ngram_size"]))))
            if "bad_words_ids" in s:
                procs.append(("bad_words_ids", NoBadWordsLogitsProcessor(s["bad_words_ids"], eos)))
            if "min_length" in s and len(eos):
                procs.append(("min_length", MinLengthLogitsProcessor(int(s["min_length"]), eos, device=device)))
            if "min_new_tokens" in s and len(eos):
                procs.append(("min_new_tokens",
                              MinNewTokensLengthLogitsProcessor(n, int(s["min_new_tokens"]), eos, device=device)))
            if "remove_invalid_values" in s:
                procs.append(("remove_invalid_values", InfNanRemoveLogitsProcessor()))
            if "suppress_tokens" in s:
                procs.append(("suppress_tokens", SuppressTokensLogitsProcessor(s["suppress_tokens"], device=device)))
            if "begin_suppress_tokens" in s:  # first generated step: history length == prompt length
                procs.append(("begin_suppress_tokens",
                              SuppressTokensAtBeginLogitsProcessor(s["begin_suppress_tokens"], n, device=device)))
            if "renormalize_logits" in s:
                procs.append(("renormalize_logits", LogitNormalization()))
        except (TypeError, ValueError) as err:
            raise PipelineError(f"the checkpoint's generation_config has an invalid greedy setting: {err}") from err
        self._lists[n] = procs
        return procs

    def __call__(
        self, logits: torch.Tensor, history: torch.Tensor, step: int, groups: Sequence[tuple[int, torch.Tensor | None]]
    ) -> torch.Tensor:
        """Processed scores of one lockstep step.

        Args:
            logits: [R, V] float32 next-token logits of the active rows.
            history: [R, W + step] ids per row: its target prompt ids left-padded with the sentinel
                id V to the chunk's longest prompt (W), then its generated ids.
            step: tokens generated so far by every active row (lockstep).
            groups: (prompt length, [r] row indices or None for all rows) of the rows of each
                prompt length; read only by the length-dependent settings.

        Returns:
            [R, V] scores whose argmax is ``generate``'s greedy choice.
        """
        vocab = logits.shape[-1]
        scores = torch.cat([logits, logits.new_full((len(logits), 1), float("-inf"))], -1)  # the sentinel column
        for k, (name, processor) in enumerate(self.for_prompt_length(groups[0][0])):
            if name not in LENGTH_DEPENDENT:
                scores = processor(history, scores)
                continue
            for n, rows in groups:
                own = self.for_prompt_length(n)[k][1]
                ids = history[:, history.shape[1] - n - step :]  # the rows' unpadded history (length n + step)
                if rows is None:
                    scores = own(ids, scores)
                else:
                    scores = scores.index_copy(0, rows, own(ids.index_select(0, rows), scores.index_select(0, rows)))
        return scores[:, :vocab]
