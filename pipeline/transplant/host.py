"""Host-to-device traffic of the decode loop: one upload of small index arrays per step, and memory release.

A decode step's decisions (which rows are still generating, which rows share a layer, where each
row's keys/values go) are made on the host from the one copy of the step's tokens that the loop
reads back (``lockstep.py``). They reach the device as integer index tensors. A plain
``torch.tensor(data, device="cuda")`` is a pageable copy that waits for the stream, i.e. a
synchronisation; here every array of a step is packed into one host tensor, pinned, and copied
with ``non_blocking=True``: one asynchronous copy per step, ordered before the kernels that read
it (PyTorch keeps the pinned block alive until the copy has run). On the CPU the host tensor is
the device tensor.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Sequence

import numpy as np
import torch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device``: pinned and copied asynchronously on CUDA, as is on the CPU."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor if device.type == "cpu" else tensor.to(device)


def upload(arrays: Sequence[Sequence[int]], device: torch.device) -> list[torch.Tensor]:
    """``arrays`` as int64 tensors on ``device``, through one (asynchronous on CUDA) copy.

    Returns one 1-D view per array, in order (an empty array gives an empty view).
    """
    sizes = [len(a) for a in arrays]
    flat = np.fromiter(itertools.chain.from_iterable(arrays), dtype=np.int64, count=sum(sizes))
    return list(to_device(torch.from_numpy(flat), device).split(sizes))


def release_memory(device: torch.device) -> None:
    """Returns cached device memory after an out-of-memory error, once the exception is gone.

    Call it outside the ``except`` block: while the exception is alive its traceback holds the
    frames, and with them the tensors of the failed forward, so nothing could be released.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
