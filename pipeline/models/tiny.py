"""Tiny decoder LMs and a byte-level tokenizer, built in code with no download.

The embedded default of the demo, the tests and the benchmark. Weights are random but seeded, so
every process (driver, Ray worker, test) that builds ``tiny`` from the same spec gets the same
model: workers receive the spec, never the bytes. A larger ``init_range`` than HF's default keeps
the logits away from near-ties, so greedy decoding is a meaningful equivalence check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from pipeline.errors import PipelineError
from pipeline.models.layouts import loadable_implementation

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma3")


@dataclass(frozen=True)
class TinySpec:
    """Shape and seed of a tiny model; ``vocab_size`` pads the byte vocabulary with plain tokens.

    ``sliding_window`` is used by ``gemma3`` only: the window of its local layers (every layer
    but each second one, which attends globally), small so that test prompts exceed it.
    """

    arch: str = "llama"
    n_layers: int = 4
    hidden_size: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 320
    init_range: float = 0.2
    seed: int = 0
    sliding_window: int = 8


def build_tokenizer(vocab_size: int = len(SPECIAL_TOKENS) + 256) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: 3 special tokens, 256 bytes, then ``<extra_k>`` filler tokens.

    It adds BOS like LLaMA's tokenizer does, so prompts are "tokenized as plain text with the
    tokenizer's default special tokens".
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    if vocab_size < len(vocab):
        raise PipelineError(f"tiny model vocab_size {vocab_size} is below the byte vocabulary ({len(vocab)})")
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    extra = [f"<extra_{k}>" for k in range(vocab_size - len(vocab))]
    if extra:
        tokenizer.add_tokens(extra)
    return tokenizer


def tiny_config(spec: TinySpec) -> PretrainedConfig:
    """The HF config of a tiny model of one of the paper's architectures."""
    common = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        max_position_embeddings=4096,
        initializer_range=spec.init_range,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        tie_word_embeddings=False,
    )
    if spec.arch == "llama":
        return LlamaConfig(**common)
    if spec.arch == "mistral":
        return MistralConfig(sliding_window=None, **common)
    if spec.arch == "qwen2":
        return Qwen2Config(use_sliding_window=False, **common)
    if spec.arch == "gemma3":
        return _gemma3_config(spec, common)
    raise PipelineError(f"unknown tiny architecture '{spec.arch}'; valid: {', '.join(ARCHITECTURES)}")


def _gemma3_config(spec: TinySpec, common: dict) -> Gemma3TextConfig:
    """Gemma 3's text model in small: local (sliding-window) layers mixed with global ones, q/k
    norms, a ``query_pre_attn_scalar`` score scale that differs from head_dim ** -0.5, norms after
    attention and MLP, embeddings scaled by sqrt(hidden)."""
    head_dim = spec.hidden_size // spec.n_heads
    return Gemma3TextConfig(
        **common,
        head_dim=head_dim,
        query_pre_attn_scalar=2 * head_dim,
        sliding_window=spec.sliding_window,
        layer_types=["full_attention" if k % 2 else "sliding_attention" for k in range(spec.n_layers)],
    )


def build_tiny(spec: TinySpec) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Builds the seeded tiny model (float32, eval mode, sdpa attention where the class accepts it) and its tokenizer."""
    config = tiny_config(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation=loadable_implementation(config), dtype=torch.float32
        )
    model.eval()
    model.generation_config.pad_token_id = PAD_ID
    return model, build_tokenizer(spec.vocab_size)
