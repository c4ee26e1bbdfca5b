"""Synthetic non-contrast head CT phantoms in Hounsfield units, with known hemorrhages.

Made by the project for the demo, tests and extra training data: an ellipsoidal head with
scalp, skull (bone ~1000 HU), grey/white matter (~38/28 HU) with smooth texture, ventricles
(CSF ~8 HU), small calcifications (~150-250 HU, to be excluded from bleeds), and hyperdense
bleeds (~55-80 HU) of clinical shapes: intraparenchymal blob, epidural lens, subdural crescent,
intraventricular and subarachnoid (sulcal) blood. Gaussian noise and partial-volume blur make
it look scanned. Coordinates are in mm in the volume's own (column x, row y, slice z) frame.
"""

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

BLEED_KINDS = ("intraparenchymal", "epidural", "subdural", "intraventricular", "subarachnoid")


@dataclass(frozen=True)
class BleedSpec:
    """One bleed: ``kind`` from BLEED_KINDS, ``center_mm`` (x, y, z) from the head centre,
    ``size_mm`` (radii for a blob, (extent, thickness, height) for lens/crescent), ``hu``."""

    kind: str
    center_mm: Tuple[float, float, float]
    size_mm: Tuple[float, float, float]
    hu: float = 65.0


@dataclass
class HeadPhantom:
    """``volume_hu`` int16 (slices, rows, columns); ``bleed_labels`` uint8, bleed n has label n+1;
    ``spacing_zyx`` in mm."""

    volume_hu: np.ndarray
    bleed_labels: np.ndarray
    spacing_zyx: Tuple[float, float, float]
    bleeds: List[BleedSpec] = field(default_factory=list)

    def bleed_mask(self, index: int = 0) -> np.ndarray:
        return self.bleed_labels == index + 1


DEFAULT_BLEEDS = (BleedSpec("intraparenchymal", (24.0, -12.0, 2.0), (13.0, 10.0, 11.0), 66.0),)


def _grid_mm(shape: Sequence[int], spacing_zyx: Sequence[float]):
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing_zyx)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return x, y, z


def _bleed_region(spec: BleedSpec, x, y, z, brain_r, semi_axes) -> np.ndarray:
    cx, cy, cz = spec.center_mm
    a, b, c = spec.size_mm
    if spec.kind in ("intraparenchymal", "intraventricular"):
        return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0
    inside_brain = brain_r < 1.0
    direction = np.array([cx, cy, cz], dtype=float)
    direction /= np.linalg.norm(direction) + 1e-9
    ax, ay, az = semi_axes
    # The point of the inner skull surface in the bleed's direction.
    surface = direction / np.sqrt((direction[0] / ax) ** 2 + (direction[1] / ay) ** 2 + (direction[2] / az) ** 2)
    if spec.kind == "epidural":
        extent, thickness = a, b
        radius = (extent ** 2 + thickness ** 2) / (2.0 * thickness)  # sphere cutting a lens of that size
        centre = surface + direction * (radius - thickness)
        lens = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius ** 2
        return lens & inside_brain & (np.abs(z - surface[2]) <= c)
    if spec.kind == "subdural":
        extent, thickness, height = a, b, c
        along = np.sqrt((x - surface[0]) ** 2 + (y - surface[1]) ** 2)
        taper = np.clip(1.0 - (along / extent) ** 2, 0.0, 1.0)
        depth_mm = (1.0 - brain_r) * min(semi_axes[:2])
        return inside_brain & (depth_mm <= thickness * taper) & (np.abs(z - surface[2]) <= height)
    if spec.kind == "subarachnoid":
        near = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0
        sulci = np.sin(x * 0.9) * np.sin(y * 0.7) > 0.55
        return near & sulci & inside_brain
    raise ValueError(f"Unknown bleed kind {spec.kind!r}; use one of {BLEED_KINDS}.")


def make_head_phantom(shape: Tuple[int, int, int] = (24, 512, 512),
                      spacing_zyx: Tuple[float, float, float] = (5.0, 0.45, 0.45),
                      bleeds: Sequence[BleedSpec] = DEFAULT_BLEEDS, noise_hu: float = 4.0,
                      seed: int = 0) -> HeadPhantom:
    """A head CT phantom of ``shape`` voxels; bleeds are painted in the order given."""
    rng = np.random.default_rng(seed)
    x, y, z = _grid_mm(shape, spacing_zyx)
    semi_axes = (66.0, 84.0, 64.0)
    brain_r = np.sqrt((x / semi_axes[0]) ** 2 + (y / semi_axes[1]) ** 2 + (z / semi_axes[2]) ** 2)
    skull_r = np.sqrt((x / (semi_axes[0] + 7)) ** 2 + (y / (semi_axes[1] + 7)) ** 2 + (z / (semi_axes[2] + 7)) ** 2)
    scalp_r = np.sqrt((x / (semi_axes[0] + 12)) ** 2 + (y / (semi_axes[1] + 12)) ** 2
                      + (z / (semi_axes[2] + 12)) ** 2)

    volume = np.full(shape, -1000.0, dtype=np.float32)
    volume[scalp_r < 1.0] = 20.0  # scalp soft tissue
    volume[skull_r < 1.0] = 1000.0
    brain = brain_r < 1.0
    # Grey/white matter: a smooth random field splits cortex-like and white-matter-like tissue.
    texture = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=(0.6, 9, 9))
    texture /= texture.std() + 1e-6
    volume[brain] = np.where(texture[brain] > 0.3, 38.0, 29.0) + 1.5 * texture[brain]
    for side in (-1.0, 1.0):  # lateral ventricles
        ventricle = ((x - side * 9) / 6.0) ** 2 + ((y + 4) / 22.0) ** 2 + ((z - 4) / 14.0) ** 2 <= 1.0
        volume[ventricle] = 8.0
    for cx, cy, cz in ((0.0, 18.0, 4.0), (-9.0, 6.0, 6.0), (9.0, 6.0, 6.0)):  # pineal, choroid plexus
        volume[((x - cx) ** 2 + (y - cy) ** 2 + ((z - cz) / 2.0) ** 2) <= 2.2 ** 2] = 180.0

    labels = np.zeros(shape, dtype=np.uint8)
    for number, spec in enumerate(bleeds, start=1):
        region = _bleed_region(spec, x, y, z, brain_r, semi_axes)
        volume[region] = spec.hu
        labels[region] = number

    # Partial-volume blur within the slice, then scanner noise.
    volume = ndi.gaussian_filter(volume, sigma=(0.0, 0.8, 0.8))
    volume += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    return HeadPhantom(np.clip(volume, -1024, 3071).astype(np.int16), labels, tuple(spacing_zyx), list(bleeds))


def oblique_direction(angle_deg: float = 12.0) -> np.ndarray:
    """A 3x3 direction matrix (LPS) rotated about the left-right and AP axes: a tilted gantry."""
    a = np.deg2rad(angle_deg)
    rot_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot_y = np.array([[np.cos(a / 2), 0, np.sin(a / 2)], [0, 1, 0], [-np.sin(a / 2), 0, np.cos(a / 2)]])
    return rot_y @ rot_x
