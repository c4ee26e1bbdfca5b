"""Automatic seed clicks for batch runs: hyperdense (acute-blood HU) regions inside the brain.

The intracranial space is the inside of the skull (bone > 300 HU, holes filled per slice) minus a
rim next to the bone, where partial volume mimics blood. Candidate blood is 50-90 HU after a
median filter; calcifications (> 130 HU) and whatever touches them are excluded, as are components
smaller than ``min_volume_ml``. Each remaining 3D component gives one click: the deepest point of
its largest slice.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class AutoSeedConfig:
    blood_hu: Tuple[float, float] = (50.0, 90.0)
    bone_hu: float = 300.0
    calcification_hu: float = 130.0
    bone_rim_mm: float = 2.0
    calcification_margin_mm: float = 2.0
    opening_mm: float = 0.9
    min_volume_ml: float = 0.1


def intracranial_mask(volume_hu: np.ndarray, spacing_zyx: Sequence[float], config: AutoSeedConfig) -> np.ndarray:
    """Voxels inside the skull and away from it, per axial slice (k, j, i)."""
    bone = volume_hu > config.bone_hu
    rim_px = max(1, int(round(config.bone_rim_mm / min(spacing_zyx[1:]))))
    inside = np.zeros_like(bone)
    for k in range(bone.shape[0]):
        if bone[k].any():
            filled = ndi.binary_fill_holes(ndi.binary_closing(bone[k], iterations=2))
            inside[k] = filled & ~ndi.binary_dilation(bone[k], iterations=rim_px)
    return inside


def find_seed_clicks(volume_hu: np.ndarray, spacing_zyx: Sequence[float],
                     config: AutoSeedConfig = AutoSeedConfig()) -> List[Tuple[int, float, float]]:
    """Seed clicks (slice k, column x, row y), largest suspected bleed first."""
    smoothed = ndi.median_filter(volume_hu, size=(1, 3, 3))
    candidates = (smoothed >= config.blood_hu[0]) & (smoothed <= config.blood_hu[1])
    inside = intracranial_mask(volume_hu, spacing_zyx, config)
    candidates &= inside
    opening_px = max(1, int(round(config.opening_mm / min(spacing_zyx[1:]))))
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndi.generate_binary_structure(2, 1)  # in-plane only: slices are thick
    candidates = ndi.binary_opening(candidates, structure=structure, iterations=opening_px)
    margin_px = max(1, int(round(config.calcification_margin_mm / min(spacing_zyx[1:]))))
    # Calcifications are dense spots inside the skull (the skull itself is excluded above).
    calcified = ndi.binary_dilation((smoothed > config.calcification_hu) & inside, structure=structure,
                                    iterations=margin_px)
    labels, count = ndi.label(candidates)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    seeds = []
    for number in range(1, count + 1):
        component = labels == number
        size_ml = component.sum() * voxel_ml
        if size_ml < config.min_volume_ml or (component & calcified).any():
            continue
        areas = component.reshape(component.shape[0], -1).sum(axis=1)
        k = int(np.argmax(areas))
        depth = ndi.distance_transform_edt(component[k])
        row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
        seeds.append((size_ml, (k, float(col), float(row))))
    return [seed for _, seed in sorted(seeds, key=lambda item: -item[0])]
