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

from SAMIHSLib.interaction.regions import BLOOD_HU, deepest_point, mm_to_whole_px, slice_with_most


@dataclass(frozen=True)
class AutoSeedConfig:
    blood_hu: Tuple[float, float] = BLOOD_HU.auto_seed_band
    bone_hu: float = BLOOD_HU.bone
    calcification_hu: float = BLOOD_HU.calcification
    bone_rim_mm: float = 2.0
    calcification_margin_mm: float = 2.0
    opening_mm: float = 0.9
    min_volume_ml: float = 0.1


def intracranial_mask(volume_hu: np.ndarray, spacing_zyx: Sequence[float], config: AutoSeedConfig) -> np.ndarray:
    """Voxels inside the skull and away from it, per axial slice (k, j, i)."""
    bone = volume_hu > config.bone_hu
    rim_px = mm_to_whole_px(config.bone_rim_mm, spacing_zyx, minimum=1)
    inside = np.zeros_like(bone)
    for k in range(bone.shape[0]):
        if bone[k].any():
            filled = ndi.binary_fill_holes(ndi.binary_closing(bone[k], iterations=2))
            inside[k] = filled & ~ndi.binary_dilation(bone[k], iterations=rim_px)
    return inside


def suspected_blood(volume_hu: np.ndarray, spacing_zyx: Sequence[float],
                    config: AutoSeedConfig = AutoSeedConfig()) -> List[np.ndarray]:
    """The band's suspected bleeds: 3D components (k, j, i) of in-band voxels inside the skull,
    none touching a calcification, each at least ``min_volume_ml``."""
    smoothed = ndi.median_filter(volume_hu, size=(1, 3, 3))
    candidates = (smoothed >= config.blood_hu[0]) & (smoothed <= config.blood_hu[1])
    inside = intracranial_mask(volume_hu, spacing_zyx, config)
    candidates &= inside
    opening_px = mm_to_whole_px(config.opening_mm, spacing_zyx, minimum=1)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndi.generate_binary_structure(2, 1)  # in-plane only: slices are thick
    candidates = ndi.binary_opening(candidates, structure=structure, iterations=opening_px)
    margin_px = mm_to_whole_px(config.calcification_margin_mm, spacing_zyx, minimum=1)
    # Calcifications are dense spots inside the skull (the skull itself is excluded above).
    calcified = ndi.binary_dilation((smoothed > config.calcification_hu) & inside, structure=structure,
                                    iterations=margin_px)
    labels, count = ndi.label(candidates)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    components = []
    for number in range(1, count + 1):
        component = labels == number
        if component.sum() * voxel_ml < config.min_volume_ml or (component & calcified).any():
            continue
        components.append(component)
    return components


def find_seed_clicks(volume_hu: np.ndarray, spacing_zyx: Sequence[float],
                     config: AutoSeedConfig = AutoSeedConfig()) -> List[Tuple[int, float, float]]:
    """Seed clicks (slice k, column x, row y), largest suspected bleed first."""
    seeds = []
    for component in suspected_blood(volume_hu, spacing_zyx, config):
        k = slice_with_most(component)
        col, row = deepest_point(component[k])
        seeds.append((int(component.sum()), (k, col, row)))
    return [seed for _, seed in sorted(seeds, key=lambda item: -item[0])]
