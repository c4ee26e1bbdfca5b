"""How many real bleeds the paper's boundary loss can learn from: ``g = 1 - C / S`` of every
connected bleed (what a click's target is) on the decoder's 256 x 256 grid, as the trainer builds
its targets. A bleed one or two pixels wide there is all boundary (g = 0): the paper's term is
then constant, and only BCE teaches it (``TrainingConfig.boundary_weight_floor``)."""

from typing import Dict, List, Sequence

import numpy as np
from scipy import ndimage

from SAMIHSLib.imaging.transforms import SliceToModelTransform

from .batches import lowres_target
from .datasets import Case
from .losses import boundary_weight

LOWRES_SIDE = 256  # LiteMedSAM's input and mask side
AREA_BINS_PX = ((0, 100), (100, 500), (500, 2000), (2000, None))  # pixels at the slice's own resolution


def component_weights(cases: Sequence[Case], lowres_side: int = LOWRES_SIDE) -> List[Dict[str, object]]:
    """One row per connected bleed of every slice: scan, slice, area (native px), area and g at
    ``lowres_side`` (the area is 0 where the target vanishes in the resize)."""
    rows: List[Dict[str, object]] = []
    for case in cases:
        for k in case.hemorrhage_slices():
            labels, count = ndimage.label(case.mask[k] > 0)
            transform = SliceToModelTransform(labels.shape, lowres_side)
            for label in range(1, count + 1):
                component = labels == label
                target = lowres_target(component, transform, lowres_side)
                rows.append({"scan": case.patient, "slice": k, "area_px": int(component.sum()),
                             "lowres_area_px": int(target.sum()), "g": float(boundary_weight(target))})
    return rows


def census(rows: List[Dict[str, object]], weak_g: float = 0.2, floor: float = 0.5) -> Dict[str, object]:
    """Counts of bleeds with no signal (g = 0), little (g < ``weak_g``), vanished targets (which
    no floor helps) and targets a boundary weight floor of ``floor`` changes, by area."""
    def summary(selected: List[Dict[str, object]]) -> Dict[str, object]:
        g = np.array([float(r["g"]) for r in selected])
        kept = np.array([int(r["lowres_area_px"]) > 0 for r in selected], bool)
        return {"components": len(selected), "g_zero": int((g == 0).sum()), f"g_below_{weak_g}": int((g < weak_g).sum()),
                "vanished_at_lowres": int((~kept).sum()), f"changed_by_floor_{floor}": int((kept & (g < floor)).sum()),
                "median_g": float(np.median(g)) if len(g) else None}
    by_area = {f"{low}-{high if high else 'max'} px": summary(
        [r for r in rows if low <= int(r["area_px"]) and (high is None or int(r["area_px"]) < high)])
        for low, high in AREA_BINS_PX}
    return {"all": summary(rows), "by_native_area": by_area}
