"""The benchmark's model and prompts: a LLaMA-architecture model built in code, real sample prompts.

The model is random (seeded) but has the shape class of the issue's benchmark: hidden 256,
LLaMA-2's MLP ratio (intermediate 688 = 2.6875 x 256), multi-head attention with head dim 64, an
8k vocabulary, float32 on CPU. Its tokenizer is :func:`pipeline.models.tiny.build_tokenizer`'s byte
tokenizer (BOS + one token per UTF-8 byte), so a prompt of L tokens is L - 1 bytes of text.

Prompts come from the bundled demo sample (``pipeline/data/sample/*.jsonl``): target = the
non-English ``prompt``, source = the parallel English ``source_prompt``. A prompt of exactly L
tokens is the tail of the sample prompts concatenated in file order up to and including the
instance's own prompt (longer prompts read like few-shot context; the answer cue stays at the
end, where the transplant happens).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.instances import Instance
from pipeline.models.tiny import TinySpec

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample"


@dataclass(frozen=True)
class Workload:
    """One benchmark cell's model shape and prompts."""

    n_layers: int = 8
    prompt_tokens: int = 200
    n_instances: int = 2
    max_new_tokens: int = 20

    def spec(self) -> TinySpec:
        return TinySpec(
            arch="llama",
            n_layers=self.n_layers,
            hidden_size=256,
            n_heads=4,
            n_kv_heads=4,
            intermediate_size=688,
            vocab_size=8192,
            init_range=0.2,
            seed=0,
        )


def _sample_pairs() -> list[tuple[str, str]]:
    """(target prompt, source prompt) of every bundled sample line, XNLI's first."""
    pairs = []
    for path in sorted(SAMPLE.glob("*.jsonl"), key=lambda f: (f.name != "xnli.jsonl", f.name)):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                pairs.append((row["prompt"], row["source_prompt"]))
    if not pairs:
        raise SystemExit(f"no sample prompts under {SAMPLE}")
    return pairs


def _tail(texts: list[str], n_bytes: int) -> str:
    """The last ``n_bytes`` bytes of the texts joined by blank lines, cut at a UTF-8 boundary.

    Cycles through ``texts`` (ending with the last one) until there are enough bytes.
    """
    joined = ""
    k = len(texts) - 1
    while len(joined.encode("utf-8")) < n_bytes + 4:
        joined = texts[k % len(texts)] + "\n\n" + joined if joined else texts[k % len(texts)]
        k -= 1
    raw = joined.encode("utf-8")[-n_bytes:]
    while raw and (raw[0] & 0xC0) == 0x80:  # drop a split multi-byte character's tail
        raw = raw[1:]
    return raw.decode("utf-8")


def instances(workload: Workload) -> list[Instance]:
    """``n_instances`` parallel prompt pairs of about ``prompt_tokens`` tokens each (BOS included)."""
    pairs = _sample_pairs()
    out = []
    for k in range(workload.n_instances):
        upto = [pairs[(k - m) % len(pairs)] for m in reversed(range(len(pairs)))]  # ends with pair k
        target = _tail([t for t, _ in upto], workload.prompt_tokens - 1)
        source = _tail([s for _, s in upto], workload.prompt_tokens - 1)
        out.append(Instance(f"bench-{k}", "xx", target, source, ""))
    return out
