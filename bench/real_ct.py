"""The shared real ct-ich slices for the benchmarks (read through training's folder reader) and
how closely an engine reproduces PyTorch on them."""

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


def agreement_summary(model, engine, slices) -> dict:
    """Mean and min Dice of ``engine``'s masks vs PyTorch's on ``slices`` (``mask_agreements``);
    empty where there are no slices (../shared absent)."""
    if not slices:
        return {}
    from SAMIHSLib.interaction.engine_agreement import mask_agreements

    agreements = mask_agreements(model, engine, slices, SPACING_ZYX)
    return {"mean": round(float(np.mean(agreements)), 4), "min": round(float(np.min(agreements)), 4),
            "masks": len(agreements)}
