"""The transplant itself (paper Sec. 2), apart from tasks, shards and Ray.

- ``sites``: where a transplant reads and writes (attn / attn_released / ffn / block outputs of a
  decoder layer at the last prompt token), as hooks that a context manager always removes.
- ``engine``: every (source layer, target layer) config of a batch of instances from one prefill,
  batched over the shared prompt prefix, decoded greedily (``TransplantEngine``).
- ``attention``: the shared-prefix attention kernel the engine's decode registers with transformers.
- ``decoding``: the checkpoint's greedy logits processors, as ``generate(do_sample=False)`` applies them.
- ``__main__``: ``python -m pipeline.transplant``, one transplant beside vanilla.

Nothing is imported here, so ``pipeline.models`` can use ``sites`` without loading the engine.
"""
