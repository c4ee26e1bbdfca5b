"""Click -> hemorrhage mask on one slice.

A model fine-tuned on clicks (``ModelConfig.trained_with_clicks``) takes the clicks directly.
The embedded LiteMedSAM was trained on boxes only and ignores a lone point, so for it a click
is turned into box prompts from the CT itself: acute blood is hyperdense (about 45-90 HU), so
the hyperdense region connected to the click, cut off from touching structures by a
morphological opening, outlines the bleed. Several (HU band, opening radius) candidates are
tried; each candidate's bounding box is given to the model and the answer that the model is
most confident in *and* that agrees best with its own intensity region wins. Negative clicks
remove their own hyperdense region from the answer.
"""

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from .metrics import dice
from .predictor import SAMIHSPredictor, SlicePrediction
from .prompts import Point, SlicePrompt
from .validation import validate_point_in_slice

# Acute intracranial blood is 40-90 HU; below 45 HU grey matter joins in, above 100 HU bone.
DEFAULT_HU_BANDS: Tuple[Tuple[float, float], ...] = ((45.0, 90.0), (45.0, 100.0))
DEFAULT_OPENING_RADII_MM: Tuple[float, ...] = (0.45, 0.9, 1.35)
# Box sizes (mm) tried around a click that lands on no hyperdense region at all.
FALLBACK_BOX_SIDES_MM: Tuple[float, ...] = (6.0, 10.0, 15.0, 22.0, 32.0, 45.0, 64.0)
MIN_REGION_PIXELS = 10
# Below this Dice between the model's answer and its hyperdense region, the model has leaked
# (thin crescents are SAM's weak spot) and the region itself is the better answer.
MIN_MODEL_REGION_AGREEMENT = 0.5


@dataclass(frozen=True)
class ClickSegmentationConfig:
    """Tuning of the intensity-guided click handling (HU and mm, never pixels)."""

    hu_bands: Tuple[Tuple[float, float], ...] = DEFAULT_HU_BANDS
    opening_radii_mm: Tuple[float, ...] = DEFAULT_OPENING_RADII_MM
    seed_search_mm: float = 3.0
    box_margin_mm: float = 1.35
    # The model refines the boundary but may not claim tissue farther than this from the region.
    region_tolerance_mm: float = 0.9
    # None: intensity-guided boxes only for models not trained on clicks; True/False forces it.
    # A click-trained model gets the clicks together with each candidate box.
    intensity_guided: Optional[bool] = None


@dataclass
class ClickResult:
    """The chosen prediction, the box that produced it (pixels) and how it was found."""

    prediction: SlicePrediction
    box: Optional[Tuple[float, float, float, float]]
    method: str


def hyperdense_region(slice_hu: np.ndarray, seed_xy: Point, band_hu: Tuple[float, float], opening_px: int,
                      seed_search_px: float) -> np.ndarray:
    """The in-band region of ``slice_hu`` (HU, usually denoised) connected to ``seed_xy``
    (column, row) after an opening of ``opening_px`` iterations; empty if no in-band pixel lies
    within ``seed_search_px``."""
    in_band = (slice_hu >= band_hu[0]) & (slice_hu <= band_hu[1])
    if opening_px > 0:
        in_band = ndi.binary_opening(in_band, ndi.generate_binary_structure(2, 1), iterations=opening_px)
    labels, _ = ndi.label(in_band)
    col, row = int(round(seed_xy[0])), int(round(seed_xy[1]))
    label = labels[row, col]
    if label == 0:
        distance, (rows, cols) = ndi.distance_transform_edt(labels == 0, return_indices=True)
        if distance[row, col] > seed_search_px:
            return np.zeros_like(in_band)
        label = labels[rows[row, col], cols[row, col]]
    return ndi.binary_fill_holes(labels == label)


def constrain_to_region(mask: np.ndarray, region: np.ndarray, tolerance_px: int) -> Tuple[np.ndarray, bool]:
    """The model's ``mask`` limited to ``region`` dilated by ``tolerance_px``, or ``region``
    itself when the two disagree (Dice < MIN_MODEL_REGION_AGREEMENT). Returns (mask, used_model)."""
    if dice(mask, region) < MIN_MODEL_REGION_AGREEMENT:
        return region.copy(), False
    near = ndi.binary_dilation(region, iterations=tolerance_px) if tolerance_px > 0 else region
    return mask & near, True


def points_mask(shape: Tuple[int, int], points: Sequence[Point]) -> np.ndarray:
    """A (rows, columns) bool image that is True at each (column, row) point."""
    mask = np.zeros(shape, dtype=bool)
    for x, y in points:
        mask[int(round(y)), int(round(x))] = True
    return mask


def remove_nearest_to_negatives(mask: np.ndarray, positive: Sequence[Point], negative: Sequence[Point]) -> np.ndarray:
    """``mask`` without the pixels nearer to a negative click than to every positive click.

    A negative click says "not this part": the part is the mask's share of the plane closest to
    it, so a leak is cut off while the bleed around the positive clicks stays. Without positive
    clicks, the connected component under each negative click goes.
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

    def distance_to(points: Sequence[Point]) -> np.ndarray:
        return ndi.distance_transform_edt(~points_mask(mask.shape, points))

    return result & (distance_to(negative) >= distance_to(positive))


def box_around(mask: np.ndarray, margin_px: int) -> Tuple[float, float, float, float]:
    """The (x0, y0, x1, y1) pixel box of ``mask`` grown by ``margin_px``, clipped to the slice."""
    rows, cols = np.nonzero(mask)
    h, w = mask.shape
    return (float(max(0, cols.min() - margin_px)), float(max(0, rows.min() - margin_px)),
            float(min(w - 1, cols.max() + margin_px)), float(min(h - 1, rows.max() + margin_px)))


class ClickSegmenter:
    """Turns clicks on a slice into a mask with whatever prompts the model understands."""

    def __init__(self, predictor: SAMIHSPredictor, config: ClickSegmentationConfig = ClickSegmentationConfig()):
        self.predictor = predictor
        self.config = config

    def _mm_to_px(self, mm: float) -> float:
        return mm / min(self.predictor.spacing_zyx[1:])

    def candidate_regions(self, slice_hu: np.ndarray, click: Point) -> List[np.ndarray]:
        """Distinct hyperdense regions around ``click``, one per (band, opening) setting."""
        regions: List[np.ndarray] = []
        seed_search = self._mm_to_px(self.config.seed_search_mm)
        for band in self.config.hu_bands:
            for radius_mm in self.config.opening_radii_mm:
                opening = max(1, int(round(self._mm_to_px(radius_mm))))
                region = hyperdense_region(slice_hu, click, band, opening, seed_search)
                if region.sum() >= MIN_REGION_PIXELS and not any(np.array_equal(region, r) for r in regions):
                    regions.append(region)
        return regions

    def segment(self, slice_index: int, positive: Sequence[Point], negative: Sequence[Point] = (),
                box: Optional[Tuple[float, float, float, float]] = None,
                mask_input: Optional[np.ndarray] = None) -> ClickResult:
        """Segment one slice from clicks (pixel column, row) and an optional box / previous mask."""
        prompt = SlicePrompt(list(positive), list(negative), box, mask_input)
        guided = self.config.intensity_guided
        if guided is None:
            guided = not self.predictor.model.config.trained_with_clicks
        if not guided or box is not None or not positive:
            return ClickResult(self.predictor.predict(slice_index, prompt), box, "prompt")
        slice_hu = self.predictor.denoised_slice(slice_index)
        result = self._from_intensity(slice_index, slice_hu, prompt)
        if result is None:
            result = self._from_box_sizes(slice_index, prompt)
        return self._apply_negatives(result, negative, positive)

    def _from_intensity(self, slice_index: int, slice_hu: np.ndarray, prompt: SlicePrompt) -> Optional[ClickResult]:
        for x, y in prompt.all_points():
            validate_point_in_slice(x, y, slice_hu.shape)
        per_click = [self.candidate_regions(slice_hu, click) for click in prompt.positive_points]
        if not per_click[0]:
            return None
        margin = int(round(self._mm_to_px(self.config.box_margin_mm)))
        best: Optional[Tuple[float, ClickResult]] = None
        for index, region in enumerate(per_click[0]):
            # Further positive clicks add their own region from the same setting (or their best).
            for others in per_click[1:]:
                if others:
                    region = region | others[min(index, len(others) - 1)]
            candidate_box = box_around(region, margin)
            clicks = (prompt.positive_points, prompt.negative_points) \
                if self.predictor.model.config.trained_with_clicks else ([], [])
            prediction = self.predictor.predict(
                slice_index, SlicePrompt(clicks[0], clicks[1], box=candidate_box, mask_input=prompt.mask_input))
            score = prediction.predicted_iou * dice(prediction.mask, region)
            if best is None or score > best[0]:
                mask, used_model = constrain_to_region(
                    prediction.mask, region, int(round(self._mm_to_px(self.config.region_tolerance_mm))))
                method = "hyperdense-region box" if used_model else "hyperdense region (model disagreed)"
                best = (score, ClickResult(replace(prediction, mask=mask), candidate_box, method))
        return best[1] if best else None

    def _from_box_sizes(self, slice_index: int, prompt: SlicePrompt) -> ClickResult:
        x, y = prompt.positive_points[0]
        h, w = self.predictor.slice_shape
        best: Optional[ClickResult] = None
        for side_mm in FALLBACK_BOX_SIDES_MM:
            half = self._mm_to_px(side_mm) / 2.0
            candidate_box = (max(0.0, x - half), max(0.0, y - half), min(w - 1.0, x + half), min(h - 1.0, y + half))
            prediction = self.predictor.predict(slice_index, SlicePrompt(box=candidate_box))
            if best is None or prediction.predicted_iou > best.prediction.predicted_iou:
                best = ClickResult(prediction, candidate_box, "box sizes around click")
        assert best is not None
        return best

    def _apply_negatives(self, result: ClickResult, negative: Sequence[Point],
                         positive: Sequence[Point] = ()) -> ClickResult:
        if not negative:
            return result
        mask = remove_nearest_to_negatives(result.prediction.mask, positive, negative)
        prediction = SlicePrediction(mask, result.prediction.predicted_iou, result.prediction.lowres_logits)
        return ClickResult(prediction, result.box, result.method + " - negatives")
