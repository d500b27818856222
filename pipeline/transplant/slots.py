"""Where each config row of a chunk lives in the shared-prefix kernel's batched layout (host side).

The prefix attention of every instance of a chunk is one batched GEMM (``prefix.SharedPrefixKV``):
the queries are laid out as [G, b] *slots*, G instance groups (a contiguous range of the instance
batch's groups) x b rows per group (the most any group has), so that the queries of group g
multiply that group's single copy of the target prefix. A group with fewer rows leaves padding
slots; a row that finished leaves a dead slot until the layout is rebuilt. The rows' own suffix
keys/values are stored in the same slots, so the prefix and the suffix scores of a slot sit side
by side in one score matrix.

Everything here is plain Python on host data (the step's alive rows and their groups); the index
arrays it produces go to the device in the step's one upload (``host.upload``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SlotLayout:
    """Slots of a set of chunk rows.

    Attributes:
        first_group: the instance group of slot row 0 (groups are ``first_group .. + groups - 1``).
        groups: G, the number of groups in the layout (groups without rows included).
        width: b, slots per group.
        slot_of: chunk row -> (g, m), its group relative to ``first_group`` and its slot in it.
    """

    first_group: int
    groups: int
    width: int
    slot_of: dict[int, tuple[int, int]]

    @classmethod
    def of(cls, rows: Sequence[int], group_of: Sequence[int]) -> SlotLayout:
        """The layout of chunk ``rows`` (ascending, so grouped), ``group_of[row]`` their instance group."""
        lo = min(group_of[r] for r in rows)
        hi = max(group_of[r] for r in rows)
        filled = [0] * (hi - lo + 1)
        slot_of = {}
        for r in rows:
            g = group_of[r] - lo
            slot_of[r] = (g, filled[g])
            filled[g] += 1
        return cls(first_group=lo, groups=hi - lo + 1, width=max(filled), slot_of=slot_of)

    @property
    def size(self) -> int:
        return self.groups * self.width

    def dead_share(self, alive: int) -> float:
        """Share of the layout's slots not holding one of ``alive`` rows (padding and finished rows)."""
        return 1.0 - alive / self.size

    def gather_from(self, old: SlotLayout, kv_heads: int) -> list[int]:
        """For every (slot, kv head) of this layout ([G, kvh, b] order), its row in ``old``'s flat
        buffers ([G*kvh*b, ...]); an empty slot reads row 0."""
        rows = [0] * (self.groups * kv_heads * self.width)
        for row, (g, m) in self.slot_of.items():
            g_old, m_old = old.slot_of[row]
            for kv in range(kv_heads):
                rows[(g * kv_heads + kv) * self.width + m] = (g_old * kv_heads + kv) * old.width + m_old
        return rows

    def queries(self, rows: Sequence[int], source: Sequence[int]) -> list[int]:
        """For every slot (g-major), the batch position of the query it uses.

        ``rows`` are the step's alive chunk rows in batch order; ``source[k]`` is the position, in
        the forward's batch, of the row whose state row ``rows[k]`` takes (itself, or the owner
        that computes a shared layer for it). Slots of no alive row read position 0: they compute
        on a real query, and nothing reads them.
        """
        out = [0] * self.size
        for row, src in zip(rows, source):
            g, m = self.slot_of[row]
            out[g * self.width + m] = src
        return out

    def coordinates(self, rows: Sequence[int]) -> tuple[list[int], list[int]]:
        """(g, m) of each of ``rows``, as two lists."""
        return [self.slot_of[r][0] for r in rows], [self.slot_of[r][1] for r in rows]

    def subset(self, rows: Sequence[int]) -> Subset:
        """The slots of some of the layout's ``rows`` (in batch order), narrower, over the same groups.

        A shared layer runs on some rows only (``sharing.py``); its attention then runs on these
        rows' slots, gathered from the layout's buffers, not on every slot.
        """
        filled = [0] * self.groups
        slots = [self.slot_of[r] for r in rows]
        g_of = [g for g, _ in slots]
        m_of = []
        for g in g_of:
            m_of.append(filled[g])
            filled[g] += 1
        width = max(filled)
        queries, source_m = [0] * (self.groups * width), [0] * (self.groups * width)
        for k, ((g, m_full), m) in enumerate(zip(slots, m_of)):
            queries[g * width + m], source_m[g * width + m] = k, m_full
        return Subset(width, queries, source_m, g_of, m_of)


@dataclass(frozen=True)
class Subset:
    """Slots of some rows of a layout (:meth:`SlotLayout.subset`), each list g-major over [G, width].

    Attributes:
        width: slots per group.
        queries: for every slot, the position (among the rows) of the query it holds (0 if empty).
        source_m: for every slot, the row's slot in the full layout (its keys/values; 0 if empty).
        g, m: each row's slot here.
    """

    width: int
    queries: list[int]
    source_m: list[int]
    g: list[int]
    m: list[int]


def next_chunk(instances: Sequence[int], size: int) -> int:
    """How many of the rows left (``instances[k]``: the instance of row k, grouped) the next chunk takes.

    Whole instances while they fit in ``size`` rows, so that a chunk's groups hold similar row
    counts (little padding); an instance with more rows than ``size`` is cut on its own into
    equal pieces (901 rows with size 256 make 4 chunks of 226, not 3 of 256 and one of 133).
    """
    first = 0
    while first < len(instances) and instances[first] == instances[0]:
        first += 1
    if first > size:
        pieces = -(-first // size)  # ceil
        return -(-first // pieces)
    taken = first
    while taken < len(instances):
        end = taken
        while end < len(instances) and instances[end] == instances[taken]:
            end += 1
        if end > size:
            break
        taken = end
    return taken
