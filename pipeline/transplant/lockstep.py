"""Greedy lockstep decoding of one chunk of config rows, written for the GPU it runs on.

All rows of a chunk start at the last target prompt token together (the transplant replaces each
row's site output there, at step 0) and decode greedily in lockstep until each has produced EOS or
``max_new_tokens`` tokens. A step is one forward of the rows still generating, the checkpoint's
greedy processors (``decoding.py``), and the token statistics (``tokens.py``).

What a GPU pays for and a CPU hides (``counting.py``): a step reads the device once, the chosen
tokens (``choice.tolist()``); every decision of the next step is made on the host from them and
from host data (which rows finished, which rows share a layer (``sharing.plan_segments``), where
each row's keys/values go (``slots.py``)) and reaches the device as index tensors in one
asynchronous upload (``host.upload``). Log-probabilities and entropies stay on the device until
the chunk ends and are read once. The number of ops dispatched per step does not depend on the
number of instances in the chunk.
"""

from __future__ import annotations

from contextlib import ExitStack
import torch

from pipeline.models.layouts import GRANULARITIES
from pipeline.transplant import attention
from pipeline.transplant.configs import Config, Generation
from pipeline.transplant.host import upload
from pipeline.transplant.native import CacheSteps
from pipeline.transplant.sharing import Segment, SharedLayers, layer_steps, plan_segments, share_depth, transitions
from pipeline.transplant.sites import Replacement, transplant
from pipeline.transplant.tokens import token_stats


class ChunkDecode:
    """The decode of one chunk: ``ChunkDecode(engine, state, chunk).run()`` -> one Generation per row.

    Args:
        engine: the ``TransplantEngine`` (model, sites, options, EOS ids, processors).
        state: the instance batch's prefill (``engine._Prefilled``).
        chunk: its config rows, grouped by instance in the batch's order.
    """

    def __init__(self, engine, state, chunk: list[Config]):
        self.engine, self.state, self.chunk = engine, state, chunk
        self.steps = engine.options.max_new_tokens
        self.group_of = [state.slot[c.instance] for c in chunk]
        self.kernel = state.kv is not None
        if self.kernel:
            self.stepper = attention.KernelSteps(engine.model, engine.sites.attn, state.kv, self.group_of, self.steps)
        else:  # a cache-route chunk holds one instance's rows
            g = self.group_of[0]
            self.stepper = CacheSteps(engine.model, state.caches[g], len(chunk), state.prefix_len[g])
        share = engine.options.share_layers and self.kernel and len(chunk) > 1
        self.sharing = SharedLayers(engine.layers) if share else None

    def run(self) -> list[Generation]:
        engine, state, chunk = self.engine, self.state, self.chunk
        n_layers = engine.n_layers
        rows = list(range(len(chunk)))  # alive chunk rows, in batch order
        history: list[list[int]] = [[] for _ in chunk]
        tokens = [state.last_token[g] for g in self.group_of]  # each alive row's next input token
        prompt_len = [state.prefix_len[g] + 1 for g in self.group_of]
        ids = self._history() if engine.processors is not None else None
        stats = []  # per step: [n, 2] (log-probability, entropy) of its alive rows
        with ExitStack() as stack:
            if self.kernel:
                stack.enter_context(attention.decoding(engine.model))
            if self.sharing is not None:
                stack.enter_context(self.sharing.applied())
            for t in range(self.steps):
                segments = self._segments(t, rows, history)
                arrays = [tokens, [prompt_len[r] - 1 + t for r in rows], rows]
                receive_kv = self.stepper.plan(t, rows, segments, arrays)
                receive_share = self._plan_sharing(segments, arrays)
                receive_sites = self._plan_sites(segments, arrays) if t == 0 else None
                receive_groups = self._plan_groups(rows, prompt_len, arrays) if ids is not None else None
                tensors = upload(arrays, engine.device)
                token_ids, positions, alive = tensors[:3]
                receive_kv(tensors)
                receive_share(tensors)
                engine.decode_layer_steps += layer_steps(segments) if segments else n_layers * len(rows)
                if receive_sites is not None:
                    with transplant(engine.model, receive_sites(tensors)):
                        logits = self.stepper.logits(token_ids, positions)
                else:
                    logits = self.stepper.logits(token_ids, positions)
                scores = None
                if ids is not None:
                    width = ids.shape[1] - self.steps
                    scores = engine.processors(logits, ids.index_select(0, alive)[:, : width + t], t,
                                               receive_groups(tensors))  # fmt: skip
                choice, logprob, entropy = token_stats(logits, scores)
                if ids is not None:
                    ids[alive, width + t] = choice
                stats.append(torch.stack([logprob, entropy], 1))
                chosen = choice.tolist()  # the step's one read of the device
                for r, token in zip(rows, chosen):
                    history[r].append(token)
                if t == self.steps - 1:
                    break
                kept = [(r, token) for r, token in zip(rows, chosen) if token not in engine.eos_ids]
                if not kept:
                    break
                rows, tokens = [r for r, _ in kept], [token for _, token in kept]
        return self._collect(history, stats)

    # -- host planning of a step -----------------------------------------------------------------
    def _segments(self, t: int, rows: list[int], history: list[list[int]]) -> list[Segment]:
        """The step's layer segments; one full segment when nothing is shared (or on the cache route)."""
        n_layers = self.engine.n_layers
        if self.sharing is None:
            everyone = list(range(len(rows)))
            return [Segment(0, n_layers, everyone, everyone)] if self.kernel else []
        keys = [(self.group_of[r], tuple(history[r])) for r in rows]
        depth = [share_depth(self.chunk[r].target_layer, n_layers, t) for r in rows]
        return plan_segments(keys, depth, n_layers, self.engine.options.share_min_saving)

    def _plan_sharing(self, segments: list[Segment], arrays: list):
        """Adds the segments' gather indices to the upload; the receiver arms the sharing hooks."""
        if self.sharing is None:
            return lambda _tensors: None
        start = len(arrays)
        takes = transitions(segments)
        for segment, take in zip(segments, takes):
            arrays.append(take or [])
            arrays.append([] if segment.full else segment.rows)
        last = segments[-1]
        arrays.append([] if last.full else last.source)

        def receive(tensors):
            it = iter(tensors[start:])
            for segment, take in zip(segments, takes):
                index = next(it)
                segment.take = index if take is not None else None
                segment.rows_index = next(it)
            expand = next(it)
            self.sharing.set(segments, None if last.full else expand)

        return receive

    def _plan_sites(self, segments: list[Segment], arrays: list):
        """Step 0's transplants: per (granularity, target layer) site, its rows and source vectors."""
        sites: dict[tuple[str, int], list[int]] = {}
        for r, c in enumerate(self.chunk):
            if c.granularity is not None:
                sites.setdefault((c.granularity, c.target_layer), []).append(r)
        if not sites:
            return lambda _tensors: {}
        start = len(arrays)
        order = list(sites)
        members = [r for site in order for r in sites[site]]
        arrays.append([self.group_of[r] for r in members])
        arrays.append([GRANULARITIES.index(self.chunk[r].granularity) for r in members])
        arrays.append([self.chunk[r].source_layer for r in members])
        for granularity, layer in order:  # each replaced row's place among the rows that run its layer
            source = next((s.source for s in segments if s.first <= layer < s.stop), None)
            arrays.append([r if source is None else source[r] for r in sites[(granularity, layer)]])

        def receive(tensors) -> dict[tuple[str, int], Replacement]:
            groups, grans, sources = tensors[start : start + 3]
            vectors = self.state.bank[groups, grans, sources].split([len(sites[s]) for s in order])
            zeros = torch.zeros_like(groups)
            plan = {}
            for site, index, vec in zip(order, tensors[start + 3 : start + 3 + len(order)], vectors):
                plan[site] = Replacement(rows=index, positions=zeros[: len(index)], vectors=vec)
            return plan

        return receive

    def _plan_groups(self, rows: list[int], prompt_len: list[int], arrays: list):
        """Rows of each prompt length (for the length-dependent processors only)."""
        lengths = sorted({prompt_len[r] for r in rows})
        if not self.engine.processors.by_length or len(lengths) == 1:
            groups = [(lengths[0], None)]
            return lambda _tensors: groups
        start = len(arrays)
        for n in lengths:
            arrays.append([k for k, r in enumerate(rows) if prompt_len[r] == n])
        return lambda tensors: list(zip(lengths, tensors[start : start + len(lengths)]))

    def _history(self) -> torch.Tensor:
        """[C, W + T] the chunk's target prompt ids, left-padded with the sentinel id, then room for T tokens."""
        prompts = self.state.prompts_left  # [G, W] left-padded with the sentinel
        groups = upload([self.group_of], self.engine.device)[0]
        room = prompts.new_zeros((len(self.chunk), self.steps))
        return torch.cat([prompts.index_select(0, groups), room], 1)

    # -- results ---------------------------------------------------------------------------------
    def _collect(self, history: list[list[int]], stats: list[torch.Tensor]) -> list[Generation]:
        """Generations from the host histories and the per-step statistics (read once)."""
        values = torch.cat(stats).tolist()  # [sum of alive rows over steps, 2]
        eos = self.engine.eos_ids
        per_row: list[list[tuple[float, float]]] = [[] for _ in self.chunk]
        at = 0
        alive = list(range(len(self.chunk)))
        for step in range(len(stats)):
            for r in alive:
                per_row[r].append(values[at])
                at += 1
            alive = [r for r in alive if len(history[r]) > step + 1]
        results = []
        for r, config in enumerate(self.chunk):
            ids = history[r]
            kept = len(ids) - 1 if ids and ids[-1] in eos else len(ids)
            taken = per_row[r]
            results.append(Generation(
                config=config,
                token_ids=ids[:kept],
                logprob_sum=sum(lp for lp, _ in taken[:kept]),
                entropy_first=taken[0][1],
                entropy_mean=sum(h for _, h in taken) / len(taken),
            ))  # fmt: skip
        return results
