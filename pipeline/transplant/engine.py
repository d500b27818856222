"""The transplant engine: every (source layer, target layer) config of a batch of instances.

XTransplant (paper Sec. 2): take the output of a module (granularity attn / ffn / block) of source
layer i at the last token of the source prompt, put it in place of the same module's output of
target layer j at the last token of the target prompt, then decode greedily. The paper runs one
``generate()`` per (i, j); this engine produces the same outputs with far less work:

1. **Prefill, once per instance batch.** One forward over the source prompts and the target
   prefixes (all target tokens but the last), right-padded: it captures the source activation
   bank (all layers x every granularity at the last source token, [G, len(GRANULARITIES), N, H])
   and records the keys/values of each target prefix once.
2. **Config rows, chunked.** A row is (instance, granularity, i, j), or vanilla. Rows of a chunk
   start at the last target prompt token together; rows with different target layers share the
   batch, each replaced at its own layer j by its own source vector (``sites.transplant``).
3. **Lockstep greedy decode** (``lockstep.py``). Rows attend to their instance's single shared
   prefix and their own suffix (``prefix.SharedPrefixKV``, all instances of a chunk in one batched
   computation), finished rows are dropped, the chunk stops when all rows have hit EOS or
   ``max_new_tokens``. A step reads the device once (the chosen tokens) and uploads its index
   tensors once. The greedy choice follows the checkpoint's logits processors as
   ``generate(do_sample=False)`` applies them (``pipeline.transplant.decoding``; ``decoding=plain``
   turns them off); log-probabilities and entropies stay on the model's raw distribution.
4. **Shared lower layers.** Rows of an instance that have generated the same tokens run each layer
   below their target layer once per step (``pipeline.transplant.sharing``; ``share_layers``).

Out of memory on the device, a decode chunk halves its rows and a prefill piece its sequences, and
the same work is retried; cached memory is returned once the exception is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.models.layouts import check_granularity, check_layers
from pipeline.models.prompts import prompt_ids
from pipeline.transplant import attention
from pipeline.transplant.configs import Config, Generation
from pipeline.transplant.decoding import DECODING_MODES, GreedyProcessors
from pipeline.transplant.host import release_memory, to_device, upload
from pipeline.models.layouts import resolve, unavailable
from pipeline.transplant.lockstep import ChunkDecode
from pipeline.transplant.native import prefix_cache
from pipeline.transplant.padding import prefill_pieces, right_pad
from pipeline.transplant.precision import precision_for
from pipeline.transplant.prefix import SharedPrefixKV
from pipeline.transplant.sites import capture_last
from pipeline.transplant.slots import next_chunk

log = logging.getLogger(__name__)
_OUT_OF_MEMORY = object()  # a forward that ran out of memory (handled outside its except block)

__all__ = ["Config", "EngineOptions", "Generation", "TransplantEngine"]
SHARED_ATTENTION = ("auto", "rows", "slots")


@dataclass(frozen=True)
class EngineOptions:
    """Knobs of the engine.

    Attributes:
        max_new_tokens: greedy decoding budget per row (paper: 20).
        chunk_size: config rows decoded together; halves on out-of-memory.
        instance_batch: instances prefilled together (their rows may share a chunk).
        simulate_oom_above: debug knob -- a decode chunk or a prefill piece with more rows than
            this raises an out-of-memory error, to exercise the halving paths on CPU.
        decoding: ``checkpoint`` applies the generation config's greedy processors as the
            authors' ``generate(do_sample=False)`` does; ``plain`` is pure argmax.
        length_aware: instance batches group instances of similar prompt length
            (:meth:`TransplantEngine.instance_batches`); False keeps the input order (the
            benchmark's A/B of length-aware batching; results are identical either way).
        prefill_slack: a prefill forward's padding may add at most this share of its real tokens
            before its sequences are split into another forward (:func:`prefill_pieces`);
            ``inf`` = one padded forward per instance batch. Results are identical either way.
        share_layers: rows of one instance with equal generated tokens run each layer they share
            once (``pipeline.transplant.sharing``; the kernel route). False = every row runs every
            layer (the A/B of the benchmark). Results are identical either way.
        share_min_saving: a layer is shared only where that saves at least this share of its
            rows; below it the gather/scatter costs more than it saves (``docs/performance.md``).
        dead_slot_share: the kernel's suffix buffers are compacted when more than this share of
            their slots hold finished rows or padding (0: whenever a row finishes); None: 0 on the
            CPU (FLOPs are dear), 0.5 on a GPU (ops are). Results are identical either way.
        shared_attention: at a shared layer, ``rows`` attends for the rows that run it, ``slots``
            for every slot of the chunk (fewer ops, more FLOPs; ``prefix.SharedPrefixKV``);
            ``auto``: rows on the CPU, slots on a GPU. Results are identical either way.
    """

    max_new_tokens: int = 20
    chunk_size: int = 256
    instance_batch: int = 8
    simulate_oom_above: int | None = None
    decoding: str = "checkpoint"
    length_aware: bool = True
    prefill_slack: float = 0.25
    share_layers: bool = True
    share_min_saving: float = 0.0
    dead_slot_share: float | None = None
    shared_attention: str = "auto"

    def __post_init__(self):
        if self.decoding not in DECODING_MODES:
            raise PipelineError(f"decoding '{self.decoding}' is not valid; valid: {', '.join(DECODING_MODES)}")
        if self.shared_attention not in SHARED_ATTENTION:
            raise PipelineError(f"shared_attention '{self.shared_attention}' is not valid; valid: "
                                f"{', '.join(SHARED_ATTENTION)}")  # fmt: skip

    def for_device(self, device: torch.device) -> tuple[float, str]:
        """(dead_slot_share, shared_attention) resolved for ``device``: CPU FLOPs, GPU kernel launches."""
        cpu = device.type == "cpu"
        dead = self.dead_slot_share if self.dead_slot_share is not None else (0.0 if cpu else 0.5)
        shared = self.shared_attention if self.shared_attention != "auto" else ("rows" if cpu else "slots")
        return dead, shared


@dataclass
class _Prefilled:
    """Per-instance-batch state after the prefill (lists are host data, indexed by group g)."""

    bank: torch.Tensor  # [G, len(GRANULARITIES), N, H] source activations
    last_token: list[int]  # last target prompt token id
    prefix_len: list[int]  # its position (= prefix length)
    kv: SharedPrefixKV | None  # the kernel route's shared prefixes
    caches: list | None  # the cache route's per-instance prefix caches (None: empty prefix)
    prompts_left: torch.Tensor | None  # [G, W] target prompt ids left-padded with the sentinel id (processors)
    slot: dict[int, int]  # instance index -> its group g in this batch


class TransplantEngine:
    """Runs vanilla and transplant configs for instances on one resident model."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        options: EngineOptions = EngineOptions(),
        eos_token_ids: Sequence[int] | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.sites = resolve(model)
        self.layers = self.sites.layers
        self.n_layers = len(self.layers)
        param = next(model.parameters())
        self.device = param.device
        self.precision = precision_for(param.dtype, self.device)
        if self.sites.route == "kernel":
            model.set_attn_implementation(attention.register(attention.base_implementation(model)))
        self.eos_ids = frozenset(self._eos_ids(eos_token_ids))  # host: a step's chosen tokens are read there
        self.processors = GreedyProcessors.from_model(model, options.decoding, sorted(self.eos_ids), self.device)
        self.vocab = model.get_output_embeddings().weight.shape[0]  # the processors' sentinel id
        if options.max_new_tokens < 1:
            raise PipelineError(f"max_new_tokens must be >= 1, got {options.max_new_tokens}")
        if options.chunk_size < 1:
            raise PipelineError(f"chunk_size must be >= 1, got {options.chunk_size}")
        self.decode_layer_steps = 0  # rows x decoder layers run by the decode (the sharing's measure)

    def _eos_ids(self, given: Sequence[int] | None) -> set[int]:
        if given is not None:
            return set(given)
        ids = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if ids is None:
            ids = self.tokenizer.eos_token_id
        if ids is None:
            return set()
        return {ids} if isinstance(ids, int) else set(ids)

    # -- public ----------------------------------------------------------------------------------
    def configs(self, n_instances: int, granularities: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[Config]:
        """Vanilla plus every (granularity, i, j) per instance, grouped by instance."""
        for granularity in granularities:
            check_granularity(granularity)
            if self.sites.missing(granularity):
                raise PipelineError(unavailable(self.sites.model_type, granularity, self.sites.missing(granularity),
                                                self.n_layers))
        for i, j in pairs:
            check_layers((i, j), self.n_layers, f"layer pair ({i}, {j})")
        return [
            config
            for n in range(n_instances)
            for config in [Config(n)]
            + [Config(n, g, i, j) for g in granularities for i, j in pairs]
        ]

    @torch.inference_mode()
    def run(
        self, instances: Sequence[Instance], granularities: Sequence[str], pairs: Sequence[tuple[int, int]]
    ) -> Iterator[Generation]:
        """Yields one :class:`Generation` per config (see :meth:`configs`), instance batch by batch.

        ``Generation.config.instance`` indexes ``instances``; generations come batch by batch in
        the order of :meth:`instance_batches`, not in instance order.
        """
        configs = self.configs(len(instances), granularities, pairs)
        by_instance: dict[int, list[Config]] = {}
        for c in configs:
            by_instance.setdefault(c.instance, []).append(c)
        tokens = [
            (self._tokenize(x.source_prompt, "source_prompt", x), self._tokenize(x.prompt, "prompt", x))
            for x in instances
        ]
        for members in self.instance_batches(tokens):
            state = self._prefill(members, [tokens[n] for n in members])
            if self.sites.route == "kernel":
                yield from self._run_rows(state, [c for n in members for c in by_instance[n]])
            else:  # a cache-route chunk holds one instance's rows (nothing padded)
                for n in members:
                    yield from self._run_rows(state, by_instance[n])
            del state

    def instance_batches(self, tokens: Sequence[tuple[list[int], list[int]]]) -> list[list[int]]:
        """Instances prefilled together: similar lengths, at most ``instance_batch`` per batch.

        The prefill pads every source prompt and target prefix of a batch to the batch's longest
        one, so a 1,700-token context batched with 200-token prompts would multiply the batch's
        prefill work by up to 8. Instances are ordered by their longer prompt (stable, so equal
        lengths keep their order) and cut into consecutive batches. Results do not depend on the
        batching (each row reads only its own instance's prefix); only the padding does.
        """
        width = [max(len(source), len(target) - 1) for source, target in tokens]
        order = list(range(len(tokens)))
        if self.options.length_aware:
            order.sort(key=width.__getitem__)  # stable
        step = self.options.instance_batch
        return [order[k : k + step] for k in range(0, len(order), step)]

    # -- prefill ---------------------------------------------------------------------------------
    def _tokenize(self, text: str, what: str, instance: Instance) -> list[int]:
        return prompt_ids(self.tokenizer, text, f"instance '{instance.id}': {what}")

    def _prefill(self, members: list[int], tokens: Sequence[tuple[list[int], list[int]]]) -> _Prefilled:
        """Forwards over source prompts and target prefixes: activation bank + prefix KV.

        ``members`` are the batch's instance indices (group g of the batch is ``members[g]``);
        ``tokens`` their (source ids, target ids). The 2G sequences go through the decoder in
        pieces of similar length (:func:`prefill_pieces`), each right-padded only to its own
        longest sequence: a 1,100-token context no longer makes every short prompt of its batch
        pay for 1,100 positions of MLP and quadratic attention. Each piece fills its rows of the
        bank and its instances' prefix keys/values; a piece that runs out of memory is split in two.
        """
        sources = [source for source, _ in tokens]
        targets = [target for _, target in tokens]
        prefixes = [t[:-1] for t in targets]
        seqs = sources + prefixes  # row r < n: source of group r; row n + g: prefix of group g
        n = len(members)
        kernel = self.sites.route == "kernel"
        kv = SharedPrefixKV(self.n_layers, self.device, self.precision, *self.options.for_device(self.device)) if kernel else None
        width = max(len(p) for p in prefixes)
        banks: list[tuple[list[int], torch.Tensor]] = []
        lengths = [len(q) for q in (seqs if kernel else sources)]  # the cache route runs prefixes below
        queue = prefill_pieces(lengths, self.options.prefill_slack)
        while queue:
            piece = queue.pop(0)
            try:
                self._check_oom(len(piece))
                part = self._prefill_piece(piece, seqs, n, width, kv)
            except torch.OutOfMemoryError:
                if len(piece) == 1:
                    raise
                part = _OUT_OF_MEMORY
            if part is _OUT_OF_MEMORY:  # outside the except block: the failed forward's tensors are freed
                log.warning("out of memory on a prefill piece of %d sequences; retrying in halves", len(piece))
                release_memory(self.device)
                queue[:0] = [piece[: len(piece) // 2], piece[len(piece) // 2 :]]
            elif part is not None:
                banks.append(part)
        decoder = self.model.get_decoder()
        captured = [g for groups, _ in banks for g in groups]  # the group of each captured bank row
        order = upload([sorted(range(n), key=captured.__getitem__)], self.device)[0]
        bank = torch.cat([b for _, b in banks]).index_select(0, order)
        return _Prefilled(
            bank=bank,
            last_token=[t[-1] for t in targets],
            prefix_len=[len(p) for p in prefixes],
            kv=kv,
            caches=None if kernel else [prefix_cache(decoder, p, self.device) for p in prefixes],
            prompts_left=self._prompts_left(targets) if self.processors is not None else None,
            slot={instance: g for g, instance in enumerate(members)},
        )

    def _prefill_piece(self, piece: list[int], seqs: list[list[int]], n: int, width: int,
                       kv: SharedPrefixKV | None) -> tuple[list[int], torch.Tensor] | None:  # fmt: skip
        """One prefill forward over ``seqs[piece]``: (source groups captured, their bank rows) or None."""
        ids, _ = right_pad([seqs[r] for r in piece], None)
        src = [k for k, r in enumerate(piece) if r < n]
        pre = [k for k, r in enumerate(piece) if r >= n]
        if kv is not None:
            kv.record_prefix(pre, [piece[k] - n for k in pre], [len(seqs[piece[k]]) for k in pre], n, width)
        rows, last = upload([src, [len(seqs[piece[k]]) - 1 for k in src]], self.device)
        try:
            with (
                capture_last(self.model, rows, last) if src else nullcontext() as part,
                attention.bound(self.sites.attn, kv) if kv is not None else nullcontext(),
            ):  # right padding needs no mask: a causal position never reads a later one
                self.model.get_decoder()(input_ids=to_device(ids, self.device), use_cache=False)
        finally:
            if kv is not None:
                kv.stop_recording()
        return ([piece[k] for k in src], part) if src else None

    def _prompts_left(self, targets: list[list[int]]) -> torch.Tensor:
        """[G, W] target prompt ids left-padded with the sentinel id (the processors' history)."""
        width = max(len(t) for t in targets)
        rows = [[self.vocab] * (width - len(t)) + t for t in targets]
        return upload([[x for row in rows for x in row]], self.device)[0].view(len(targets), width)

    def _check_oom(self, rows: int) -> None:
        if self.options.simulate_oom_above is not None and rows > self.options.simulate_oom_above:
            raise torch.OutOfMemoryError(f"simulated out of memory: a forward of {rows} rows")

    # -- rows ------------------------------------------------------------------------------------
    def _run_rows(self, state: _Prefilled, rows: list[Config]) -> Iterator[Generation]:
        """Chunks rows (:func:`~.slots.next_chunk`); on out-of-memory halves the chunk size and
        retries the same rows."""
        size = self.options.chunk_size
        done = 0
        instance_of = [c.instance for c in rows]
        while done < len(rows):
            chunk = rows[done : done + next_chunk(instance_of[done:], size)]
            try:
                self._check_oom(len(chunk))
                results = ChunkDecode(self, state, chunk).run()
            except torch.OutOfMemoryError:
                if len(chunk) == 1:
                    raise
                size = max(1, min(size, len(chunk)) // 2)
                results = _OUT_OF_MEMORY
            if results is _OUT_OF_MEMORY:  # outside the except block: the failed chunk's tensors are freed
                log.warning("out of memory on a chunk of %d rows; retrying with chunk_size=%d", len(chunk), size)
                release_memory(self.device)
                continue
            yield from results
            done += len(chunk)
