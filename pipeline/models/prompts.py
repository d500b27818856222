"""How a prompt becomes the model's input ids: the one tokenization of every stage.

The authors' code calls the tokenizer with its defaults (``add_special_tokens=True``: LLaMA's BOS,
Gemma's ``<bos>``) and no chat template; the engine, the selector features and the case-study tool
all tokenize this way, so a prompt has the same ids, and the same last token, everywhere.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from pipeline.errors import PipelineError


def prompt_ids(tokenizer: PreTrainedTokenizerBase, text: str, what: str) -> list[int]:
    """The ids of ``text``; an empty (or blank) prompt, or one with no ids, is one line naming ``what``."""
    if not text or not text.strip():
        raise PipelineError(f"{what} is empty")
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if not ids:
        raise PipelineError(f"{what} tokenizes to nothing")
    return ids
