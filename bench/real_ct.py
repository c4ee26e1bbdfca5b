"""The shared real ct-ich slices for the benchmarks (read through training's folder reader)."""

from pathlib import Path
from typing import List, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_SLICES = REPO.parent / "shared" / "data" / "ct-ich-slices"
SPACING_ZYX = (5.0, 0.45, 0.45)  # the dataset's slice thickness and typical in-plane spacing


def real_slices() -> List[Tuple[np.ndarray, np.ndarray]]:
    """(HU, bleed mask) of the shared ct-ich slices, or [] where ../shared is absent."""
    from training.datasets import load_dataset

    if not SHARED_SLICES.is_dir():
        return []
    return [(case.image_hu[0], case.mask[0]) for case in load_dataset("folder", str(SHARED_SLICES))]
