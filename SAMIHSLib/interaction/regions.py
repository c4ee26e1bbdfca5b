"""Mask and region geometry shared by click handling, propagation, sessions, seeds, training,
tests and benchmarks: one home for each small concept.

Pixel points are (column, row) = (x, y); masks are (rows, columns) or (k, j, i) bool arrays.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.prompts import Point

PixelBox = Tuple[float, float, float, float]  # (x0, y0, x1, y1), pixels, inclusive


@dataclass(frozen=True)
class BloodHU:
    """The Hounsfield bands of intracranial blood used everywhere (HU).

    Acute blood is 40-90 HU; below ~45 HU grey matter joins in, above ~100 HU bone and
    calcification. ``search_bands`` are tried in turn around a click; ``propagation_band``
    seeds the next slice; ``check_band`` says whether a mask is still "hyperdense"; a click whose
    smoothed HU lies outside ``possible`` is clearly not blood (air, fat, bone): no bleed of any age
    (chronic subdural blood is hypodense, near CSF) lies there.
    """

    search_bands: Tuple[Tuple[float, float], ...] = ((45.0, 90.0), (45.0, 100.0))
    propagation_band: Tuple[float, float] = (45.0, 90.0)
    check_band: Tuple[float, float] = (45.0, 100.0)
    # Acute to chronic blood (chronic subdurals reach ~0 HU); below is fat and air, above bone.
    possible: Tuple[float, float] = (-20.0, 110.0)
    # Half-width of the band centred on the click's own HU when no search band reaches it.
    click_band_half_width: float = 10.0
    auto_seed_band: Tuple[float, float] = (50.0, 90.0)
    bone: float = 300.0
    calcification: float = 130.0


BLOOD_HU = BloodHU()


def mm_to_px(mm: float, spacing_zyx: Sequence[float]) -> float:
    """``mm`` as a (fractional) number of in-plane pixels, on the finer in-plane axis."""
    return float(mm) / min(float(s) for s in spacing_zyx[1:])


def mm_to_whole_px(mm: float, spacing_zyx: Sequence[float], minimum: int = 0) -> int:
    """``mm`` rounded to whole in-plane pixels, at least ``minimum``."""
    return max(minimum, int(round(mm_to_px(mm, spacing_zyx))))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a 2D or 3D ``mask`` (empty if ``mask`` is)."""
    labels, count = ndi.label(mask)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = ndi.sum(mask, labels, range(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def component_at(mask: np.ndarray, point: Point) -> np.ndarray:
    """The connected component of a 2D ``mask`` under the (column, row) ``point`` (empty if none)."""
    labels, _ = ndi.label(mask)
    label = labels[int(round(point[1])), int(round(point[0]))]
    return labels == label if label else np.zeros_like(mask, dtype=bool)


def occupied_extent(mask: np.ndarray) -> Optional[Tuple[slice, ...]]:
    """The smallest box holding every voxel of ``mask``, or None if it is empty."""
    per_axis = [np.flatnonzero(mask.any(axis=tuple(other for other in range(mask.ndim) if other != axis)))
                for axis in range(mask.ndim)]
    if not per_axis[0].size:
        return None
    return tuple(slice(int(found[0]), int(found[-1]) + 1) for found in per_axis)


def _padded_extent(mask: np.ndarray, pad: int = 1) -> Tuple[slice, slice]:
    """The (rows, columns) slices of ``mask``'s bounding box grown by ``pad`` (clipped)."""
    rows, cols = np.nonzero(mask)
    return (slice(max(0, rows.min() - pad), rows.max() + pad + 1),
            slice(max(0, cols.min() - pad), cols.max() + pad + 1))


def deepest_point(mask: np.ndarray) -> Point:
    """(column, row) of the interior point of the largest component of a 2D ``mask`` farthest
    from its boundary: the click a user makes, and our evaluation click."""
    largest = largest_component(mask)
    if not largest.any():
        raise ValueError("The mask is empty: no click can be placed.")
    # The distance map inside the component only needs its padded box (and is exact there).
    box = _padded_extent(largest)
    depth = ndi.distance_transform_edt(largest[box])
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return float(col + box[1].start), float(row + box[0].start)


def random_interior_point(mask: np.ndarray, rng: np.random.Generator, min_depth_px: float = 2.0) -> Point:
    """(column, row) of a random pixel of the largest component at least ``min_depth_px`` from its
    boundary (any of its pixels when it is thinner than that)."""
    largest = largest_component(mask)
    if not largest.any():
        raise ValueError("The mask is empty: no click can be placed.")
    depth = ndi.distance_transform_edt(largest)
    rows, cols = np.nonzero(depth >= min_depth_px)
    if rows.size == 0:
        rows, cols = np.nonzero(largest)
    index = int(rng.integers(rows.size))
    return float(cols[index]), float(rows[index])


def slice_with_most(mask3d: np.ndarray) -> int:
    """Index k of the slice of a (k, j, i) mask with the most voxels."""
    return int(np.argmax(np.asarray(mask3d).reshape(mask3d.shape[0], -1).sum(axis=1)))


def points_mask(shape: Tuple[int, int], points: Sequence[Point]) -> np.ndarray:
    """A (rows, columns) bool image that is True at each (column, row) point."""
    mask = np.zeros(shape, dtype=bool)
    for x, y in points:
        mask[int(round(y)), int(round(x))] = True
    return mask


def contains_any(mask: np.ndarray, points: Sequence[Point]) -> bool:
    """Whether ``mask`` is True at any of the (column, row) ``points``."""
    return any(bool(mask[int(round(y)), int(round(x))]) for x, y in points)


def box_around(mask: np.ndarray, margin_px: int) -> PixelBox:
    """The (x0, y0, x1, y1) pixel box of ``mask`` grown by ``margin_px``, clipped to the slice."""
    rows, cols = np.nonzero(mask)
    h, w = mask.shape
    return (float(max(0, cols.min() - margin_px)), float(max(0, rows.min() - margin_px)),
            float(min(w - 1, cols.max() + margin_px)), float(min(h - 1, rows.max() + margin_px)))


def box_of_points(points: Sequence[Point]) -> PixelBox:
    """The (x0, y0, x1, y1) pixel box spanned by (column, row) ``points`` (e.g. a box's corners)."""
    xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
    return (min(xs), min(ys), max(xs), max(ys))


def keep_components_near(mask: np.ndarray, anchor: np.ndarray, distance_px: int) -> np.ndarray:
    """The connected components of ``mask`` that touch ``anchor`` dilated by ``distance_px``."""
    if not mask.any() or not anchor.any():
        return np.zeros_like(mask)
    near = ndi.binary_dilation(anchor, iterations=max(1, distance_px)) if distance_px > 0 else anchor
    labels, _ = ndi.label(mask)
    touching = np.unique(labels[near & mask])
    return np.isin(labels, touching[touching > 0])


def hyperdense_region(slice_hu: np.ndarray, seed_xy: Point, band_hu: Tuple[float, float], opening_px: int,
                      seed_search_px: float) -> np.ndarray:
    """The in-band region of ``slice_hu`` (HU, usually denoised) connected to ``seed_xy``
    (column, row) after an opening of ``opening_px`` iterations; empty if no in-band pixel lies
    within ``seed_search_px``."""
    in_band = (slice_hu >= band_hu[0]) & (slice_hu <= band_hu[1])
    col, row = int(round(seed_xy[0])), int(round(seed_xy[1]))
    reach = int(np.floor(seed_search_px))
    window = (slice(max(0, row - reach), row + reach + 1), slice(max(0, col - reach), col + reach + 1))
    # The opened region lies inside the in-band components that reach the search window, and an
    # opening of r iterations reads 2r pixels around each pixel: on that crop, padded, the answer
    # is the whole slice's, pixel for pixel, at a fraction of the cost of opening the whole slice.
    components, _ = ndi.label(in_band)
    touching = np.unique(components[window])
    touching = touching[touching > 0]
    if touching.size == 0:
        return np.zeros_like(in_band)
    crop = _padded_extent(np.isin(components, touching), pad=2 * opening_px + 2)
    region = np.zeros_like(in_band)
    region[crop] = _opened_region_at(in_band[crop], (col - crop[1].start, row - crop[0].start), opening_px,
                                     seed_search_px)
    return region


def _opened_region_at(in_band: np.ndarray, seed_xy: Tuple[int, int], opening_px: int,
                      seed_search_px: float) -> np.ndarray:
    """:func:`hyperdense_region` on an in-band image, the seed given in its pixels."""
    if opening_px > 0:
        in_band = ndi.binary_opening(in_band, ndi.generate_binary_structure(2, 1), iterations=opening_px)
    labels, _ = ndi.label(in_band)
    col, row = seed_xy
    inside = 0 <= row < labels.shape[0] and 0 <= col < labels.shape[1]
    label = labels[row, col] if inside else 0
    if label == 0:  # the nearest in-band pixel within the search radius, if any
        reach = int(np.floor(seed_search_px))
        r0, c0 = max(0, row - reach), max(0, col - reach)
        window = labels[r0:max(0, row + reach + 1), c0:max(0, col + reach + 1)]
        rows, cols = np.nonzero(window)
        if rows.size == 0:
            return np.zeros_like(in_band)
        distance = (rows + r0 - row) ** 2 + (cols + c0 - col) ** 2
        nearest = int(np.argmin(distance))
        if distance[nearest] > seed_search_px ** 2:
            return np.zeros_like(in_band)
        label = window[rows[nearest], cols[nearest]]
    return ndi.binary_fill_holes(labels == label)


# A bleed on one slice covers at most ~17 % of the head's cross-section in the 59 real slices
# (the largest: a big intraparenchymal bleed); an answer over this share is a leak into the brain.
MAX_HEAD_FRACTION = 0.4


HEAD_HU = -300.0  # above this: the head (skin, brain, bone), not air


def head_area_px(slice_hu: np.ndarray) -> int:
    """Pixels of the head's cross-section on an HU slice (everything denser than air, holes filled)."""
    return int(ndi.binary_fill_holes(slice_hu > HEAD_HU).sum())


def fills_the_head(mask: np.ndarray, head_px: int) -> bool:
    """Whether ``mask`` is too large to be one slice of a bleed (``MAX_HEAD_FRACTION`` of the head)."""
    return head_px > 0 and mask.sum() > MAX_HEAD_FRACTION * head_px


# A bleed on one slice lies against brain somewhere: of the 340 true bleed components (>= 50 px) on
# the 241 bleed slices of the whole CTs and the shared slices, none has more than 72 % of its edge
# within BONE_CONTACT_MM of bone. A region bordered by bone nearly all round is the whole brain
# section of a slice near the vertex, where partial volume puts brain in the blood band.
MAX_BONE_EDGE_FRACTION = 0.85
BONE_CONTACT_MM = 1.0


def enclosed_by_bone(mask: np.ndarray, slice_hu: np.ndarray, spacing_zyx: Sequence[float],
                     blood: BloodHU = BLOOD_HU) -> bool:
    """Whether more than ``MAX_BONE_EDGE_FRACTION`` of ``mask``'s edge lies within
    ``BONE_CONTACT_MM`` of bone: the intracranial section itself, not a bleed."""
    if not mask.any():
        return False
    reach = mm_to_whole_px(BONE_CONTACT_MM, spacing_zyx, minimum=1)
    crop = _padded_extent(mask, pad=reach + 1)  # only the mask's neighbourhood matters
    edge = mask[crop] & ~ndi.binary_erosion(mask[crop])
    near_bone = ndi.binary_dilation(slice_hu[crop] > blood.bone, iterations=reach)
    return float((edge & near_bone).sum()) > MAX_BONE_EDGE_FRACTION * float(edge.sum())


# How far from the click a fallback answer (the click's own intensity region) may reach: it is a
# local blob that contains the click, never half the brain.
CLICK_REGION_RADIUS_MM = 10.0


def disc_around(shape: Tuple[int, int], point: Point, radius_px: float) -> np.ndarray:
    """A (rows, columns) bool disc of ``radius_px`` around the (column, row) ``point``."""
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - point[1]) ** 2 + (cols - point[0]) ** 2 <= radius_px ** 2


def click_intensity_region(slice_hu: np.ndarray, click: Point, pixel_mm: float,
                           blood: BloodHU = BLOOD_HU) -> Tuple[np.ndarray, float]:
    """The last-resort answer to a positive click: the region of blood-like HU connected to it,
    within ``CLICK_REGION_RADIUS_MM`` of the click.

    Tries the blood search bands (with a light opening, then none), then a band centred on the
    click's own HU when that HU is possible for some bleed (``blood.possible``: chronic subdural
    blood is hypodense). Returns (region, smoothed HU at the click); the region is empty only when
    the click is clearly not on blood (air, fat, bone).
    """
    col, row = int(round(click[0])), int(round(click[1]))
    click_hu = float(slice_hu[row, col])
    local = np.where(disc_around(slice_hu.shape, (col, row), CLICK_REGION_RADIUS_MM / pixel_mm), slice_hu, -1000.0)
    opening = max(1, int(round(0.45 / pixel_mm)))
    bands = list(blood.search_bands)
    low, high = blood.possible
    if low <= click_hu <= high:
        half = blood.click_band_half_width
        bands.append((click_hu - half, click_hu + half))
    for band in bands:
        for opening_px in (opening, 0):
            region = hyperdense_region(local, click, band, opening_px, 0.0)
            if region[row, col]:
                return region, click_hu
    return np.zeros_like(slice_hu, dtype=bool), click_hu


@dataclass(frozen=True)
class OwnBandGrowth:
    """How an answer grows into the pixels around it that look like its own core: within
    ``reach_mm`` of it, HU between its ``quantile`` and ``100 - quantile`` percentiles widened by
    ``margin_hu`` on each side. A bleed's rim has about its HU (partial volume lowers it a little) and
    the acute bands that outline a click's region cut it off; bone does not, but brain near the
    bleed's HU can, so a nearly complete answer may grow past its edge (docs/accuracy-3d.md)."""

    reach_mm: float = 4.0
    quantile: float = 40.0
    margin_hu: float = 10.0
    # True: the grown region is not the answer but a new box prompt; the model's answer to it (held
    # to the region, as a click's hyperdense region holds it) replaces the first answer when the
    # model is at least as sure of it. False: the grown region is the answer.
    ask_the_model: bool = False


def grow_into_own_band(mask: np.ndarray, slice_hu: np.ndarray, spacing_zyx: Sequence[float],
                       growth: OwnBandGrowth) -> np.ndarray:
    """``mask`` (non-empty) plus the pixels of its own HU band (``growth``) within its reach that
    connect to it; the mask itself is kept whole."""
    values = slice_hu[mask]
    low = float(np.percentile(values, growth.quantile)) - growth.margin_hu
    high = float(np.percentile(values, 100.0 - growth.quantile)) + growth.margin_hu
    reach = ndi.binary_dilation(mask, iterations=mm_to_whole_px(growth.reach_mm, spacing_zyx, minimum=1))
    grown = mask | (reach & (slice_hu >= low) & (slice_hu <= high))
    labels, _ = ndi.label(grown)
    touching = np.unique(labels[mask])
    return np.isin(labels, touching[touching > 0])


def constrain_to_region(mask: np.ndarray, region: np.ndarray, tolerance_px: int,
                        min_agreement: float = 0.5) -> Tuple[np.ndarray, bool]:
    """The model's ``mask`` limited to ``region`` dilated by ``tolerance_px``, or ``region``
    itself when the two disagree (Dice < ``min_agreement``: the model leaked, thin crescents are
    SAM's weak spot). Returns (mask, used_model)."""
    from SAMIHSLib.metrics import dice

    if dice(mask, region) < min_agreement:
        return region.copy(), False
    near = ndi.binary_dilation(region, iterations=tolerance_px) if tolerance_px > 0 else region
    return mask & near, True


# A negative click removes the part of the mask nearer to it than to any positive click, but only
# within this reach of it: at least NEGATIVE_REACH_MM, or NEGATIVE_REACH_DEPTHS times its depth
# inside the mask (a click deep in a large leak reaches across the leak; one on a thin rim of
# false area takes that rim, not a wedge of the bleed behind it).
NEGATIVE_REACH_MM = 3.0
NEGATIVE_REACH_DEPTHS = 3.0


def remove_nearest_to_negatives(mask: np.ndarray, positive: Sequence[Point], negative: Sequence[Point],
                                reach_floor_px: Optional[float] = None) -> np.ndarray:
    """``mask`` without the pixels nearer to a negative click than to every positive click.

    A negative click says "not this part": the part is the mask's share of the plane closest to
    it, so a leak is cut off while the bleed around the positive clicks stays. With
    ``reach_floor_px`` each negative click reaches only max(``reach_floor_px``,
    ``NEGATIVE_REACH_DEPTHS`` x its depth inside the mask) pixels. Without positive clicks, the
    connected component under each negative click goes.
    """
    result = mask.copy()
    if not negative:
        return result
    if not positive:
        labels, _ = ndi.label(result)
        for x, y in negative:
            hit = labels[int(round(y)), int(round(x))]
            if hit:
                result &= labels != hit
        return result

    if not result.any():
        return result
    # Distances are needed only over the mask; a box holding the mask and every click is exact.
    extent = result | points_mask(mask.shape, list(positive) + list(negative))
    box = _padded_extent(extent, pad=1)
    offset = (box[1].start, box[0].start)
    local_negative = [(x - offset[0], y - offset[1]) for x, y in negative]
    local_positive = [(x - offset[0], y - offset[1]) for x, y in positive]
    shape = result[box].shape

    def distance_to(points: Sequence[Point]) -> np.ndarray:
        return ndi.distance_transform_edt(~points_mask(shape, points))

    nearer = distance_to(local_negative) < distance_to(local_positive)
    if reach_floor_px is not None:
        depth = ndi.distance_transform_edt(result[box])
        reach = np.zeros(shape, dtype=bool)
        for x, y in local_negative:
            radius = max(reach_floor_px, NEGATIVE_REACH_DEPTHS * float(depth[int(round(y)), int(round(x))]))
            reach |= disc_around(shape, (x, y), radius)
        nearer &= reach
    result[box] &= ~nearer
    return result
