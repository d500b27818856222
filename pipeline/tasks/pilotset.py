"""PilotSets the paper's way: balanced per language, ``random.seed(666)``, parallel items shared.

The paper runs its full N x N sweeps on small PilotSets: 50 instances per language, drawn with
seed 666. For multilingual tasks the same parallel items are drawn in every language (so the
languages are compared on the same content); cultural tasks have different questions per
culture, so each language is drawn on its own. A draw picks items, so an item made of several
instances (a CulturalBench-Hard question: four true/false judgements) is kept whole. GlobalOpinionQA's confidence filter (largest option
probability >= 0.8) is applied by its task before drawing. Selection keeps file order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.instances import Instance

PILOT_SEED = 666
PILOT_SIZE = 50


@dataclass(frozen=True)
class Record:
    """An instance plus the key of its parallel item (the same key in every language)."""

    item: str
    instance: Instance


def select_pilot(
    records: Sequence[Record], n: int = PILOT_SIZE, seed: int = PILOT_SEED, parallel: bool = True
) -> list[Record]:
    """Draws a PilotSet of ``n`` records per language, deterministically.

    Args:
        records: the pool, in a stable order.
        n: items per language (fewer when a language has fewer).
        seed: the random seed (the paper's 666).
        parallel: draw one set of items shared by all languages (multilingual tasks); only items
            present in every language of the pool are eligible. Otherwise draw ``n`` items per
            language, in sorted language order (cultural tasks); with one instance per item this
            is a draw of ``n`` instances.

    Returns:
        The selected records, in pool order.
    """
    rng = random.Random(seed)
    langs = sorted({record.instance.lang for record in records})
    if parallel:
        present: dict[str, set[str]] = {}
        for record in records:
            present.setdefault(record.item, set()).add(record.instance.lang)
        eligible = [item for item, seen in present.items() if len(seen) == len(langs)]
        chosen = set(rng.sample(eligible, min(n, len(eligible))))
        return [record for record in records if record.item in chosen]
    keep: set[tuple[str, str]] = set()
    for lang in langs:
        items = list(dict.fromkeys(record.item for record in records if record.instance.lang == lang))
        keep.update((lang, item) for item in rng.sample(items, min(n, len(items))))
    return [record for record in records if (record.instance.lang, record.item) in keep]


def split_pool(
    records: Sequence[Record], split: str, n: int = PILOT_SIZE, seed: int = PILOT_SEED, parallel: bool = True
) -> list[Record]:
    """Applies ``split`` to a pool: ``pilot`` (the PilotSet), ``unseen`` (the rest) or ``all``."""
    if split == "all":
        return list(records)
    pilot = select_pilot(records, n, seed, parallel)
    if split == "pilot":
        return pilot
    taken = {record.instance.id for record in pilot}
    return [record for record in records if record.instance.id not in taken]
