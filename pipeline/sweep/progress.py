"""A progress line per finished shard: shards done/total, configs per second, ETA.

Plain log lines (no carriage returns) through ``logging`` (Hydra's job logging prints them on
stdout), so progress reads the same in a terminal and in ``ray job logs``.
"""

from __future__ import annotations

import logging
import time

from pipeline.sweep.runner import ShardDone

log = logging.getLogger("pipeline.sweep")


class Progress:
    def __init__(self, total_shards: int, already_done: int, configs_per_shard: float):
        self.total = total_shards
        self.done = already_done
        self.configs = 0
        self.configs_per_shard = configs_per_shard
        self.started = time.perf_counter()

    def update(self, shard: ShardDone) -> None:
        self.done += 1
        self.configs += shard.configs
        elapsed = time.perf_counter() - self.started
        rate = self.configs / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) * self.configs_per_shard
        eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate > 0 else "--:--:--"
        log.info(
            "[sweep] shards %d/%d | shard %d %d configs in %.1fs | %.1f configs/s | ETA %s",
            self.done, self.total, shard.index, shard.configs, shard.seconds, rate, eta,
        )  # fmt: skip
