"""A row of work and what it produced: a config (vanilla or (granularity, source layer, target layer)) and its generation."""

from __future__ import annotations

from dataclasses import dataclass


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
