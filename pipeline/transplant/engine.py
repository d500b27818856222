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
3. **Lockstep greedy decode.** Rows attend to their instance's single shared prefix and their own
   suffix (``attention.SharedPrefixKV``), finished rows are dropped, the chunk stops when all rows
   have hit EOS or ``max_new_tokens``. The greedy choice follows the checkpoint's logits processors
   as ``generate(do_sample=False)`` applies them (``pipeline.transplant.decoding``; ``decoding=plain`` turns
   them off); log-probabilities and entropies stay on the model's raw distribution.
4. **Shared lower layers.** Rows of an instance that have generated the same tokens run each layer
   below their target layer once per step (``pipeline.transplant.sharing``; ``share_layers``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from pipeline.transplant import attention
from pipeline.transplant.decoding import DECODING_MODES, GreedyProcessors
from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.schema import GRANULARITIES
from pipeline.transplant.layouts import resolve, unavailable
from pipeline.transplant.native import CacheSteps, prefix_cache
from pipeline.transplant.padding import prefill_pieces, right_pad
from pipeline.transplant.sharing import SharedLayers, at_computed_rows, layer_steps
from pipeline.transplant.sites import Replacement, capture_last, transplant
from pipeline.transplant.tokens import token_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    """One row of work: vanilla (granularity None) or transplant (granularity, source, target)."""

    instance: int
    granularity: str | None = None
    source_layer: int | None = None
    target_layer: int | None = None


@dataclass(frozen=True)
class Generation:
    """What one config row produced.

    ``logprob_sum`` sums log p of the tokens in ``token_ids`` (EOS excluded); ``entropy_first`` is
    the entropy (nats) of the first step's distribution; ``entropy_mean`` the mean over every step
    taken (the EOS step included, so it is defined even when no token was generated).
    """

    config: Config
    token_ids: list[int]
    logprob_sum: float
    entropy_first: float
    entropy_mean: float


@dataclass(frozen=True)
class EngineOptions:
    """Knobs of the engine.

    Attributes:
        max_new_tokens: greedy decoding budget per row (paper: 20).
        chunk_size: config rows decoded together; halves on out-of-memory.
        instance_batch: instances prefilled together (their rows may share a chunk).
        simulate_oom_above: debug knob -- a chunk with more rows than this raises an
            out-of-memory error, to exercise the halving path on CPU.
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

    def __post_init__(self):
        if self.decoding not in DECODING_MODES:
            raise PipelineError(f"decoding '{self.decoding}' is not valid; valid: {', '.join(DECODING_MODES)}")


@dataclass
class _Prefilled:
    """Per-instance-batch state after the prefill."""

    bank: torch.Tensor  # [G, len(GRANULARITIES), N, H] source activations
    last_token: torch.Tensor  # [G] last target prompt token id
    last_position: torch.Tensor  # [G] its position (= prefix length)
    kv: attention.SharedPrefixKV | None  # the kernel route's shared prefixes
    caches: list | None  # the cache route's per-instance prefix caches (None: empty prefix)
    prompts: torch.Tensor  # [G, P_max] target prompt ids, right-padded (input of the processors)
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
        self.device = next(model.parameters()).device
        if self.sites.route == "kernel":
            model.set_attn_implementation(attention.register(attention.base_implementation(model)))
        self.eos = torch.tensor(sorted(self._eos_ids(eos_token_ids)), dtype=torch.long, device=self.device)
        self.processors = GreedyProcessors.from_model(model, options.decoding, self.eos.tolist(), self.device)
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
            if granularity not in GRANULARITIES:
                raise PipelineError(f"unknown granularity '{granularity}'; valid: {', '.join(GRANULARITIES)}")
            if self.sites.missing(granularity):
                raise PipelineError(unavailable(self.sites.model_type, granularity, self.sites.missing(granularity),
                                                self.n_layers))
        for i, j in pairs:
            if not (0 <= i < self.n_layers and 0 <= j < self.n_layers):
                raise PipelineError(f"layer pair ({i}, {j}) out of range: the model has layers 0..{self.n_layers - 1}")
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
        if not text or not text.strip():
            raise PipelineError(f"instance '{instance.id}': {what} is empty")
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if not ids:
            raise PipelineError(f"instance '{instance.id}': {what} tokenizes to nothing")
        return list(ids)

    def _prefill(self, members: list[int], tokens: Sequence[tuple[list[int], list[int]]]) -> _Prefilled:
        """Forwards over source prompts and target prefixes: activation bank + prefix KV.

        ``members`` are the batch's instance indices (group g of the batch is ``members[g]``);
        ``tokens`` their (source ids, target ids). The 2G sequences go through the decoder in
        pieces of similar length (:func:`prefill_pieces`), each right-padded only to its own
        longest sequence: a 1,100-token context no longer makes every short prompt of its batch
        pay for 1,100 positions of MLP and quadratic attention. Each piece fills its rows of the
        bank and its instances' prefix keys/values.
        """
        sources = [source for source, _ in tokens]
        targets = [target for _, target in tokens]
        prefixes = [t[:-1] for t in targets]
        seqs = sources + prefixes  # row r < n: source of group r; row n + g: prefix of group g
        n = len(members)
        kernel = self.sites.route == "kernel"
        kv = attention.SharedPrefixKV(self.n_layers) if kernel else None
        width = max(len(p) for p in prefixes)
        bank: torch.Tensor | None = None
        decoder = self.model.get_decoder()
        lengths = [len(q) for q in (seqs if kernel else sources)]  # the cache route runs prefixes below
        for piece in prefill_pieces(lengths, self.options.prefill_slack):
            ids, mask = right_pad([seqs[r] for r in piece], self.tokenizer.pad_token_id)
            src = [k for k, r in enumerate(piece) if r < n]
            pre = [k for k, r in enumerate(piece) if r >= n]
            if kernel:
                kv.record_prefix(
                    torch.tensor(pre, dtype=torch.long, device=self.device), [piece[k] - n for k in pre],
                    [len(seqs[piece[k]]) for k in pre], n, width,
                )  # fmt: skip
            rows = torch.tensor(src, dtype=torch.long, device=self.device)
            last = torch.tensor([len(seqs[piece[k]]) - 1 for k in src], dtype=torch.long, device=self.device)
            with (
                capture_last(self.model, rows, last) if src else nullcontext() as part,
                attention.bound(self.sites.attn, kv) if kernel else nullcontext(),
            ):
                decoder(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False)
            if kernel:
                kv.stop_recording()
            if src:
                if bank is None:
                    bank = part.new_zeros((n, *part.shape[1:]))
                bank[[piece[k] for k in src]] = part
        assert bank is not None  # every source prompt has at least one token (_tokenize)
        prompts, _ = right_pad(targets, self.tokenizer.pad_token_id)
        return _Prefilled(
            bank=bank,
            last_token=torch.tensor([t[-1] for t in targets], device=self.device),
            last_position=torch.tensor([len(p) for p in prefixes], device=self.device),
            kv=kv,
            caches=None if kernel else [prefix_cache(decoder, p, self.device) for p in prefixes],
            prompts=prompts.to(self.device),
            slot={instance: g for g, instance in enumerate(members)},
        )

    # -- rows ------------------------------------------------------------------------------------
    def _run_rows(self, state: _Prefilled, rows: list[Config]) -> Iterator[Generation]:
        """Chunks rows; on out-of-memory halves the chunk size and retries the same rows.

        The rows left are split into equal chunks of at most ``size`` rows (772 rows with size 256
        make 4 chunks of 193, not 3 of 256 and one of 4 that would cost a full decode loop).
        """
        size = self.options.chunk_size
        done = 0
        while done < len(rows):
            left = len(rows) - done
            n_chunks = -(-left // size)  # ceil(left / size)
            chunk = rows[done : done + -(-left // n_chunks)]
            try:
                results = self._decode_chunk(state, chunk)
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                size = max(1, size // 2)
                log.warning("out of memory on a chunk of %d rows; retrying with chunk_size=%d", len(chunk), size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            yield from results
            done += len(chunk)

    def _plan(self, state: _Prefilled, chunk: list[Config]) -> dict[tuple[str, int], Replacement]:
        """Which rows get which source vector at which (granularity, target layer) site."""
        members: dict[tuple[str, int], list[int]] = {}
        for r, c in enumerate(chunk):
            if c.granularity is not None:
                members.setdefault((c.granularity, c.target_layer), []).append(r)
        plan = {}
        for (granularity, layer), rows in members.items():
            g = GRANULARITIES.index(granularity)
            groups = torch.tensor([state.slot[chunk[r].instance] for r in rows], device=self.device)
            sources = torch.tensor([chunk[r].source_layer for r in rows], device=self.device)
            index = torch.tensor(rows, device=self.device)
            plan[(granularity, layer)] = Replacement(
                rows=index, positions=torch.zeros_like(index), vectors=state.bank[groups, g, sources]
            )
        return plan

    def _decode_chunk(self, state: _Prefilled, chunk: list[Config]) -> list[Generation]:
        """Transplant at the last prompt token, then greedy lockstep decoding of the chunk."""
        if self.options.simulate_oom_above is not None and len(chunk) > self.options.simulate_oom_above:
            raise torch.OutOfMemoryError(f"simulated out of memory: chunk of {len(chunk)} rows")
        steps = self.options.max_new_tokens
        group = torch.tensor([state.slot[c.instance] for c in chunk], device=self.device)
        if state.kv is not None:
            stepper = attention.KernelSteps(self.model, self.sites.attn, state.kv, group, steps)
        else:
            g = state.slot[chunk[0].instance]
            stepper = CacheSteps(self.model, state.caches[g], len(chunk), int(state.last_position[g]))
        active = torch.arange(len(chunk), device=self.device)  # chunk rows still generating
        tokens = state.last_token[group]
        positions = state.last_position[group]
        out_tokens = torch.full((len(chunk), steps), -1, dtype=torch.long, device=self.device)
        logprobs = torch.zeros(len(chunk), steps, dtype=torch.float64, device=self.device)
        entropies = torch.zeros(len(chunk), steps, dtype=torch.float64, device=self.device)
        n_steps = torch.zeros(len(chunk), dtype=torch.long, device=self.device)
        if self.processors is not None:  # [C, P_max + steps]: target prompt ids, then generated ids
            prompt_len = positions + 1  # [C]
            history = torch.cat([state.prompts[group], out_tokens.new_zeros(len(chunk), steps)], dim=1)
        plan = self._plan(state, chunk)
        shared = None
        if self.options.share_layers and state.kv is not None and len(chunk) > 1:
            shared = SharedLayers(self.layers, [c.target_layer for c in chunk], self.options.share_min_saving,
                                  self.device)  # fmt: skip
        for t in range(steps):
            if shared is not None:
                layers = shared.step(t, group[active], out_tokens[active, :t])
                state.kv.share(layers)
                self.decode_layer_steps += layer_steps(layers, len(active))
                if t == 0:  # a replaced row runs its target layer itself, at its place among the computed rows
                    plan = {site: at_computed_rows(rep, layers[site[1]]) for site, rep in plan.items()}
            else:
                self.decode_layer_steps += self.n_layers * len(active)
            with transplant(self.model, plan if t == 0 else {}), shared.applied() if shared else nullcontext():
                logits = stepper.logits(tokens, positions)
            scores = None
            if self.processors is not None:
                scores = self.processors(logits, history[active], prompt_len[active], t)
            choice, logprob, entropy = token_stats(logits, scores)
            if self.processors is not None:
                history[active, prompt_len[active] + t] = choice
            out_tokens[active, t] = choice
            logprobs[active, t] = logprob.double()
            entropies[active, t] = entropy.double()
            n_steps[active] += 1
            finished = torch.isin(choice, self.eos)
            if t == steps - 1 or bool(finished.all()):
                break
            stepper.advance()
            if bool(finished.any()):
                keep = (~finished).nonzero()[:, 0]
                stepper.keep(keep)
                if shared is not None:
                    shared.keep(keep)
                active, choice, positions = active[keep], choice[keep], positions[keep]
            tokens, positions = choice, positions + 1
        return self._collect(chunk, out_tokens.cpu(), logprobs.cpu(), entropies.cpu(), n_steps.cpu())

    def _collect(self, chunk, out_tokens, logprobs, entropies, n_steps) -> list[Generation]:
        eos = set(self.eos.tolist())
        results = []
        for r, config in enumerate(chunk):
            taken = int(n_steps[r])
            ids = out_tokens[r, :taken].tolist()
            kept = taken - 1 if ids and ids[-1] in eos else taken
            results.append(
                Generation(
                    config=config,
                    token_ids=ids[:kept],
                    logprob_sum=float(logprobs[r, :kept].sum()),
                    entropy_first=float(entropies[r, 0]),
                    entropy_mean=float(entropies[r, :taken].mean()),
                )
            )
        return results

