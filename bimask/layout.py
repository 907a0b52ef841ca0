"""Views of Linear and Conv2d weights as GEMM matrices (out x K) and back."""

from __future__ import annotations

import torch

CONV_ORDERS = ("nhwc", "nchw")


def check_weight(weight: torch.Tensor, what: str = "weight") -> None:
    """Reject weights no mask routine can handle, with a message that says what to do."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(weight).__name__}")
    if not weight.is_floating_point():
        raise TypeError(
            f"{what} has dtype {weight.dtype}; N:M masks need a floating-point weight "
            "(float32, float16, bfloat16 or float64)"
        )
    if weight.dim() not in (2, 4):
        raise ValueError(
            f"{what} has shape {tuple(weight.shape)}; expected a 2-D Linear weight (out, in) "
            "or a 4-D Conv2d weight (out, in, kh, kw)"
        )
    # One cheap reduction first; the exact per-element test only runs when it is not finite.
    if not torch.isfinite(weight.detach().sum()) and not torch.isfinite(weight).all():
        raise ValueError(
            f"{what} contains NaN or Inf values; fix the weights (did training diverge?)"
        )


def check_conv_order(conv_order: str) -> None:
    if conv_order not in CONV_ORDERS:
        raise ValueError(f"conv_order must be one of {CONV_ORDERS}, got {conv_order!r}")


def to_gemm(weight: torch.Tensor, conv_order: str = "nhwc") -> torch.Tensor:
    """Return the out x K GEMM view of a weight.

    For a conv weight (out, in, kh, kw), ``nhwc`` orders K as (kh, kw, in), input channels fastest,
    as implicit-GEMM kernels read it; ``nchw`` orders K as (in, kh, kw), the original Bi-Mask order.
    """
    if weight.dim() == 2:
        return weight
    check_conv_order(conv_order)
    if conv_order == "nhwc":
        return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return weight.reshape(weight.shape[0], -1)


def from_gemm(matrix: torch.Tensor, shape: torch.Size, conv_order: str = "nhwc") -> torch.Tensor:
    """Inverse of :func:`to_gemm`: put an out x K matrix back into the weight's shape."""
    if len(shape) == 2:
        return matrix.reshape(shape)
    check_conv_order(conv_order)
    out, cin, kh, kw = shape
    if conv_order == "nhwc":
        return matrix.reshape(out, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
    return matrix.reshape(shape)
