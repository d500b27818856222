"""How the shared-prefix kernel stores keys/values and multiplies, for a model dtype on a device.

Precision: scores, the softmax and its sums are float32 whatever the model dtype. In float32 that
is plain. A half-precision model keeps its keys/values in its own dtype where the device's GEMMs
take half inputs and return float32 (``out_dtype``, CUDA; checked once by
:func:`precision_for`), as FlashAttention does (probabilities rounded to the half dtype for the
value GEMM, accumulation in float32); elsewhere (the CPU) they are stored and multiplied in
float32.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """How the kernel stores and multiplies.

    Attributes:
        storage: dtype of the stored keys/values.
        out_dtype: half-precision GEMMs return float32 directly (else inputs are float32 already).
    """

    storage: torch.dtype
    out_dtype: bool


@functools.lru_cache(maxsize=None)
def precision_for(dtype: torch.dtype, device: torch.device) -> Precision:
    """float32 compute for ``dtype`` on ``device``: native half GEMMs with float32 outputs where the
    device has them (checked on small random matrices against a float32 product), else float32
    storage."""
    if dtype == torch.float32:
        return Precision(dtype, False)
    try:
        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(2, 3, 8, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(2, 8, 5, generator=gen).to(device=device, dtype=dtype)
        bias = torch.randn(2, 1, 5, generator=gen).to(device)
        got = torch.baddbmm(bias, a, b, out_dtype=torch.float32, alpha=0.5)
        plain = torch.bmm(a, b, out_dtype=torch.float32)
        want = torch.baddbmm(bias, a.float(), b.float(), alpha=0.5)
        ok = got.dtype == plain.dtype == torch.float32 and torch.allclose(got, want, atol=1e-2, rtol=1e-2)
    except (RuntimeError, NotImplementedError, TypeError):
        ok = False
    return Precision(dtype, True) if ok else Precision(torch.float32, False)
