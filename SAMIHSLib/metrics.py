"""Evaluation metrics in physical units: Dice, HD95 in mm, volume error in mL."""

from typing import Sequence

import numpy as np
from scipy import ndimage as ndi


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two binary masks; 1.0 when both are empty."""
    a, b = np.asarray(prediction, bool), np.asarray(truth, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask, structure=ndi.generate_binary_structure(mask.ndim, 1))


def hd95_mm(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric surface distance in mm (``spacing`` in array axis order).

    ``inf`` when exactly one mask is empty, 0.0 when both are.
    """
    a, b = np.asarray(prediction, bool), np.asarray(truth, bool)
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return float("inf")
    # Every surface point lies in the box around both masks, so distances computed there are exact.
    box = tuple(slice(int(where.min()), int(where.max()) + 1) for where in np.nonzero(a | b))
    a, b = a[box], b[box]
    surface_a, surface_b = _surface(a), _surface(b)
    to_b = ndi.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndi.distance_transform_edt(~surface_a, sampling=spacing)
    distances = np.concatenate([to_b[surface_a], to_a[surface_b]])
    return float(np.percentile(distances, 95))


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a binary mask in mL (1 mL = 1000 mm^3)."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def volume_error_ml(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """Signed volume error, prediction minus truth, in mL."""
    return volume_ml(prediction, spacing) - volume_ml(truth, spacing)
