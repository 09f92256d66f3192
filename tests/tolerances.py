"""The one tolerance rule for comparing a computed result with its float64 reference.

A result stored in dtype D (a loss, a gradient, an updated canvas) that a kernel computed in D's
accumulation dtype A (float32 for bfloat16/float16/float32, float64 for float64) and then rounded
once to D may differ from the float64 reference, elementwise, by

    |actual - reference| <= roundings * eps(D) * |reference|      its own rounding to D
                          + ULPS * eps(A) * scale                   the computation in A
                          + roundings * subnormal spacing of D      rounding near zero (float16)

with scale = max |reference| over the whole tensor (so a near-zero element of a tensor is judged
against the tensor's magnitude, not its own). `roundings` is 1 against a float64 reference and 2
when both sides were rounded to D (two implementations compared with each other).

Why this is tight enough: a correct bf16/fp16 gradient is fp32 math rounded once, i.e. within
half an ulp (0.5 eps(D) relative) of the exact value (measured on the op tests' cases: at most
0.46 eps(D) x max|grad|, i.e. bf16 0.36 %, fp16 0.04 %). So a bf16 gradient off by 1 % fails (as
does one scaled by 1.15, or an all-zero one), where the former rule (10 x a fixed tolerance x
max|grad|) let 20 % through in bf16 and 2 % in fp16, and the CUDA tests' unscaled atol passed an
all-zero gradient.
Why ULPS = 256: reductions differ from the float64 reference by up to ~50 ulps of float32 (the
channels-last BN variance: float32 lane sums flushed to double every 2048 elements, shifted by a
sample of the channel) and, for float64 results, by up to ~200 ulps of float64 at 4e4 elements
per channel (the float64 reference's own summation error is of the same order). For low-precision
results this part is negligible next to the rounding part (256 eps(float32) = 3e-5).
"""
from __future__ import annotations

import torch

ULPS = 256


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute a `dtype` result in (dfnas.ops._common.opmath)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def tolerances(dtype: torch.dtype, reference: torch.Tensor, roundings: int = 1,
               computed_in: torch.dtype | None = None, ulps: int = ULPS) -> dict:
    """rtol/atol for torch.testing.assert_close of a `dtype` result against `reference`.
    `computed_in` (default: the kernels' accumulation dtype for `dtype`) and `ulps` describe the
    computation when it is not a kernel's: e.g. a float32 gradient through a bf16-autocast network."""
    finfo = torch.finfo(dtype)
    computed_in = computed_in or accumulation_dtype(dtype)
    scale = reference.detach().abs().max().item() if reference.numel() else 0.0
    subnormal_spacing = finfo.tiny * finfo.eps
    return {
        "rtol": roundings * finfo.eps,
        "atol": ulps * torch.finfo(computed_in).eps * scale + roundings * subnormal_spacing,
    }


def assert_close(actual: torch.Tensor, reference: torch.Tensor, *, dtype: torch.dtype | None = None,
                 roundings: int = 1, computed_in: torch.dtype | None = None, ulps: int = ULPS,
                 msg=None) -> None:
    """assert_close under the rule above; `dtype` (default: actual's) is the dtype the result was
    stored in. Compared in float64; the reference may live on another device."""
    dtype = dtype or actual.dtype
    reference = reference.detach().to(actual.device, torch.float64)
    kwargs = tolerances(dtype, reference, roundings, computed_in, ulps)
    if msg is not None:
        kwargs["msg"] = msg
    torch.testing.assert_close(actual.detach().double(), reference, **kwargs)


def assert_norm_close(actual: torch.Tensor, reference: torch.Tensor, *, computed_in: torch.dtype,
                      ulps: int, msg: str = "") -> None:
    """||actual - reference||_2 <= ulps * eps(computed_in) * ||reference||_2: for results of a whole
    network run in low precision (bf16 autocast), whose elements are sums over layers of rounded
    terms: single elements can lose all relative accuracy where those terms cancel, the norm-wise
    error stays at a few eps(computed_in) per layer."""
    reference = reference.detach().to(actual.device, torch.float64)
    error = torch.linalg.vector_norm(actual.detach().double() - reference).item()
    allowed = ulps * torch.finfo(computed_in).eps * torch.linalg.vector_norm(reference).item()
    assert error <= allowed, f"{msg}: norm-wise error {error:.3g} > {allowed:.3g} ({ulps} ulps of {computed_in})"
