"""Bilinear resizing of (..., H, W) float32 arrays with half-pixel centres, value for value what
PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)`` returns on CPUs with AVX2 or
AVX-512 (its vectorised kernels) for outputs at least 64 pixels wide (every size the app resizes
to; torch takes another path for narrower ones, which may differ by rounding), so that the app
needs no torch to turn logits into masks.

PyTorch's kernel fuses a multiply and an add (one rounding), in the source index and in each
axis's blend; the fused steps are computed here in float64, whose product of two float32 values is
exact, then rounded once to float32. It resizes the last axis first, then the rows.
"""

from functools import lru_cache
from typing import Tuple

import numpy as np

_F32, _F64 = np.float32, np.float64


@lru_cache(maxsize=64)
def _axis_weights(size_in: int, size_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first index, second index, its float64 weight, the other's float32 weight) per output position."""
    scale = _F32(size_in / size_out)
    centres = np.arange(size_out, dtype=_F32) + _F32(0.5)
    source = np.maximum((_F64(scale) * centres.astype(_F64) - 0.5).astype(_F32), _F32(0))
    first = np.minimum(source.astype(np.int64), size_in - 1)
    second = np.minimum(first + 1, size_in - 1)
    weight_second = np.clip(source - first.astype(_F32), _F32(0), _F32(1))
    weight_first = _F32(1) - weight_second
    for array in (first, second, weight_first, weight_second):
        array.setflags(write=False)
    return first, second, weight_first.astype(_F64), weight_second


def _resize_axis(values: np.ndarray, size_out: int, axis: int) -> np.ndarray:
    first, second, weight_first, weight_second = _axis_weights(values.shape[axis], size_out)
    shape = [1] * values.ndim
    shape[axis] = size_out
    blended = np.take(values, second, axis=axis)
    blended *= weight_second.reshape(shape)  # rounded to float32, as the kernel does
    result = np.take(values, first, axis=axis).astype(_F64)
    result *= weight_first.reshape(shape)  # exact in float64
    result += blended
    return result.astype(_F32)


def resize_bilinear(values: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """``values`` (..., H, W) resized to (..., *size_hw) in float32."""
    values = np.asarray(values, dtype=_F32)
    out_h, out_w = int(size_hw[0]), int(size_hw[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"Cannot resize to {size_hw}: both sides must be at least 1.")
    if values.shape[-1] != out_w:
        values = _resize_axis(values, out_w, values.ndim - 1)
    if values.shape[-2] != out_h:
        values = _resize_axis(values, out_h, values.ndim - 2)
    return values
