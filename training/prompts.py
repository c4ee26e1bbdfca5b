"""Simulated prompts for training and evaluation, in pixel (column, row) coordinates."""

from typing import Optional, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.click_segmentation import MIN_REGION_PIXELS, ClickSegmentationConfig
from SAMIHSLib.interaction.prompts import Point
from SAMIHSLib.interaction.regions import box_around, deepest_point, hyperdense_region


def random_foreground_click(mask: np.ndarray, rng: np.random.Generator) -> Point:
    """A uniformly random foreground pixel: the paper's training click."""
    rows, cols = np.nonzero(mask)
    index = int(rng.integers(len(rows)))
    return float(cols[index]), float(rows[index])


def corrective_click(prediction: np.ndarray, truth: np.ndarray,
                     also_true: Optional[np.ndarray] = None) -> Optional[Tuple[Point, bool]]:
    """The next click a user would make: the deepest point of the largest error region,
    positive if it is missed ``truth``, negative if it is a false positive. Pixels of
    ``also_true`` (e.g. other bleeds on the slice) are never called false. None if no error."""
    missed, extra = truth & ~prediction, prediction & ~truth
    if also_true is not None:
        extra &= ~also_true
    candidates = []
    for region, positive in ((missed, True), (extra, False)):
        labels, count = ndi.label(region)
        if count:
            sizes = ndi.sum(region, labels, range(1, count + 1))
            candidates.append((float(np.max(sizes)), labels == (int(np.argmax(sizes)) + 1), positive))
    if not candidates:
        return None
    _, largest, positive = max(candidates, key=lambda c: c[0])
    return deepest_point(largest), positive


def jittered_box(mask: np.ndarray, rng: np.random.Generator, max_shift_fraction: float = 0.1,
                 max_pixels: int = 10) -> Tuple[float, float, float, float]:
    """The mask's bounding box with each side moved by up to 10 % of its size (at most 10 px)."""
    rows, cols = np.nonzero(mask)
    h, w = mask.shape
    x0, x1, y0, y1 = cols.min(), cols.max(), rows.min(), rows.max()
    jitter_x = min(max_pixels, max(1, int((x1 - x0) * max_shift_fraction)))
    jitter_y = min(max_pixels, max(1, int((y1 - y0) * max_shift_fraction)))
    shift = rng.integers(-1, 2, size=4) * rng.integers(0, [jitter_x, jitter_y, jitter_x, jitter_y], endpoint=True)
    return (float(np.clip(x0 + shift[0], 0, w - 1)), float(np.clip(y0 + shift[1], 0, h - 1)),
            float(np.clip(x1 + shift[2], 0, w - 1)), float(np.clip(y1 + shift[3], 0, h - 1)))


def region_box(slice_hu: np.ndarray, click: Point, pixel_mm: float, rng: np.random.Generator,
               config: ClickSegmentationConfig = ClickSegmentationConfig()) -> Optional[Tuple[float, float, float, float]]:
    """The box the app's intensity-guided click handling makes for ``click`` on ``slice_hu``
    (HU, denoised) with one of its (HU band, opening) settings, picked at random; None when
    that setting finds no hyperdense region there."""
    band = config.hu_bands[int(rng.integers(len(config.hu_bands)))]
    radius_mm = config.opening_radii_mm[int(rng.integers(len(config.opening_radii_mm)))]
    region = hyperdense_region(slice_hu, click, band, max(1, int(round(radius_mm / pixel_mm))),
                               config.seed_search_mm / pixel_mm)
    if region.sum() < MIN_REGION_PIXELS:
        return None
    return box_around(region, int(round(config.box_margin_mm / pixel_mm)))


def corrective_click_3d(prediction: np.ndarray, truth: np.ndarray) -> Optional[Tuple[Tuple[int, Point], bool]]:
    """The next click a user makes on a 3D result: on the largest 3D error region (missed bleed,
    or false area that is no bleed; components joined across diagonal neighbours, as thick slices
    need), on that region's largest slice, at its deepest point; positive if it is missed bleed.
    Returns ((slice k, (column, row)), positive), or None if there is no error."""
    best: Optional[Tuple[int, np.ndarray, bool]] = None
    for region, positive in ((truth & ~prediction, True), (prediction & ~truth, False)):
        labels, count = ndi.label(region, structure=np.ones((3, 3, 3), bool))
        if count:
            sizes = np.bincount(labels.ravel())[1:]  # far faster than ndi.sum on a whole CT
            if best is None or float(np.max(sizes)) > best[0]:
                best = (float(np.max(sizes)), labels == int(np.argmax(sizes)) + 1, positive)
    if best is None:
        return None
    _, largest, positive = best
    k = int(np.argmax(largest.reshape(largest.shape[0], -1).sum(axis=1)))
    return (k, deepest_point(largest[k])), positive
