"""Bleed pasting: a real bleed from one slice placed on another patient's brain, where that kind
of bleed occurs, so that a model sees more bleed types, sizes and densities than the few real
slices hold.

Placement by subtype, from the recipient's HU (no atlas): IPH deep in the parenchyma; SDH and EDH
against the inner table; IVH and SAH on CSF-dense pixels (ventricles, sulci, cisterns); an
unlabelled bleed anywhere in the brain. The bleed's HU can be lowered (down to ~38 HU: subacute
or anaemic blood), and its edge is feathered over one pixel so that no cut line gives it away.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.regions import mm_to_whole_px


@dataclass(frozen=True)
class PasteConfig:
    lowest_bleed_mean_hu: float = 38.0
    lower_density_probability: float = 0.5
    deep_parenchyma_mm: float = 12.0   # IPH: at least this far inside the brain's edge
    inner_table_band_mm: float = 4.0   # SDH/EDH: within this of the brain's edge
    csf_band_hu: Tuple[float, float] = (-5.0, 20.0)


def brain_region(image_hu: np.ndarray) -> np.ndarray:
    """Pixels inside the skull: the largest soft-tissue component (-20..100 HU), holes filled."""
    tissue = ndi.binary_opening((image_hu > -20) & (image_hu < 100), iterations=2)
    labels, count = ndi.label(tissue)
    if not count:
        return np.zeros(image_hu.shape, bool)
    largest = labels == (int(np.argmax(ndi.sum(tissue, labels, range(1, count + 1)))) + 1)
    return ndi.binary_fill_holes(largest)


def placement_candidates(image_hu: np.ndarray, subtype: str, pixel_mm: float,
                         config: PasteConfig = PasteConfig(), brain: Optional[np.ndarray] = None) -> np.ndarray:
    """Where a bleed of ``subtype`` may be centred on this slice (boolean mask, maybe empty);
    ``brain``: :func:`brain_region` of the slice, when the caller has it already."""
    brain = brain_region(image_hu) if brain is None else brain
    depth_mm = ndi.distance_transform_edt(brain) * pixel_mm
    if subtype == "IPH":
        return depth_mm >= config.deep_parenchyma_mm
    if subtype in ("SDH", "EDH"):
        return brain & (depth_mm <= config.inner_table_band_mm)
    if subtype in ("IVH", "SAH"):
        low, high = config.csf_band_hu
        smoothed = ndi.median_filter(image_hu, 3)
        return brain & (depth_mm > 2.0) & (smoothed > low) & (smoothed < high)
    return depth_mm >= 4.0


def _crop(image_hu: np.ndarray, component: np.ndarray, scale: float) -> Tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(component)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    values, shape = image_hu[box].astype(np.float32), component[box]
    if abs(scale - 1.0) > 0.05:
        values = ndi.zoom(values, scale, order=1)
        shape = ndi.zoom(shape.astype(np.float32), scale, order=1) > 0.5
    return values, shape


def paste_bleed(image_hu: np.ndarray, mask: np.ndarray, donor_hu: np.ndarray, donor_component: np.ndarray,
                subtype: str, rng: np.random.Generator, pixel_mm: float = 1.0, donor_pixel_mm: float = 1.0,
                config: PasteConfig = PasteConfig()) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(image, mask) with the donor's bleed pasted in, or None when this slice has no place for it.

    ``mask`` keeps the recipient's own bleed; the pasted bleed is added to it. Inputs are not modified.
    """
    if not donor_component.any():
        return None
    values, shape = _crop(donor_hu, donor_component, donor_pixel_mm / pixel_mm)
    if not shape.any():
        return None
    whole_brain = brain_region(image_hu)
    candidates = placement_candidates(image_hu, subtype, pixel_mm, config, whole_brain) & ~ndi.binary_dilation(
        mask, iterations=mm_to_whole_px(3.0, (pixel_mm, pixel_mm, pixel_mm), minimum=1))
    rows, cols = np.nonzero(candidates)
    if not len(rows):
        return None
    pick = int(rng.integers(len(rows)))
    height, width = shape.shape
    top, left = int(rows[pick]) - height // 2, int(cols[pick]) - width // 2
    if top < 0 or left < 0 or top + height > image_hu.shape[0] or left + width > image_hu.shape[1]:
        return None
    region = (slice(top, top + height), slice(left, left + width))
    shape = shape & whole_brain[region]  # a bleed never crosses the skull
    if shape.sum() < 10:
        return None
    bleed = values.copy()
    mean = float(bleed[shape].mean())
    if rng.random() < config.lower_density_probability and mean > config.lowest_bleed_mean_hu:
        bleed += rng.uniform(config.lowest_bleed_mean_hu, mean) - mean
    # Feathered edge: the pasted pixels blend into the recipient over about one pixel.
    weight = np.clip(ndi.gaussian_filter(shape.astype(np.float32), 0.7), 0.0, 1.0) * ndi.binary_dilation(shape)
    out_image, out_mask = image_hu.astype(np.float32).copy(), mask.copy()
    out_image[region] = weight * bleed + (1.0 - weight) * out_image[region]
    out_mask[region] |= shape
    return out_image, out_mask
