"""Clinical measurements of a 3D hemorrhage mask (mm, mm^2, mL)."""

from dataclasses import asdict, dataclass
from typing import Dict, Sequence

import numpy as np

from SAMIHSLib.metrics import volume_ml


@dataclass
class HemorrhageMeasurements:
    """``volume_ml`` from voxel counts; ``abc_over_2_ml`` the bedside ABC/2 estimate (A, B the
    largest axial diameter and its perpendicular on the slice of largest area, C the number of
    bleed slices times the slice thickness)."""

    volume_ml: float
    abc_over_2_ml: float
    max_axial_area_mm2: float
    max_area_slice: int
    first_slice: int
    last_slice: int
    num_slices: int

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)


def _diameters_mm(slice_mask: np.ndarray, spacing_ji: Sequence[float]) -> tuple:
    """Longest in-plane diameter A and the longest extent perpendicular to it, B (mm)."""
    rows, cols = np.nonzero(slice_mask)
    points = np.stack([rows * spacing_ji[0], cols * spacing_ji[1]], axis=1)
    if len(points) < 2:
        return 0.0, 0.0
    centred = points - points.mean(axis=0)
    # Principal axis of the mask: A along it, B across it (standard ABC/2 practice).
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    along, across = centred @ vt[0], centred @ vt[1]
    pixel = float(np.mean(spacing_ji))
    return float(np.ptp(along) + pixel), float(np.ptp(across) + pixel)


def measure_hemorrhage(mask: np.ndarray, spacing_zyx: Sequence[float]) -> HemorrhageMeasurements:
    """Measurements of a (k, j, i) mask with ``spacing_zyx`` in mm."""
    mask = np.asarray(mask, dtype=bool)
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1) * spacing_zyx[1] * spacing_zyx[2]
    filled = np.nonzero(areas)[0]
    if filled.size == 0:
        return HemorrhageMeasurements(0.0, 0.0, 0.0, -1, -1, -1, 0)
    k_max = int(np.argmax(areas))
    a, b = _diameters_mm(mask[k_max], spacing_zyx[1:])
    c = filled.size * spacing_zyx[0]
    return HemorrhageMeasurements(
        volume_ml=volume_ml(mask, spacing_zyx), abc_over_2_ml=a * b * c / 2.0 / 1000.0,
        max_axial_area_mm2=float(areas[k_max]), max_area_slice=k_max,
        first_slice=int(filled[0]), last_slice=int(filled[-1]), num_slices=int(filled.size),
    )
