"""Click -> hemorrhage mask on one slice.

A model fine-tuned on clicks (``ModelConfig.trained_with_clicks``) takes the clicks directly.
The embedded LiteMedSAM was trained on boxes only and ignores a lone point, so for it a click
is turned into box prompts from the CT itself: acute blood is hyperdense (about 45-90 HU), so
the hyperdense region connected to the click, cut off from touching structures by a
morphological opening, outlines the bleed. Several (HU band, opening radius) candidates are
tried; each candidate's bounding box is given to the model and the answer that the model is
most confident in *and* that agrees best with its own intensity region wins; no candidate may
fill the head (a band that floods the brain is a leak). Negative clicks cut away the part of the
answer nearer to them than to any positive click, within their reach.
"""

from dataclasses import dataclass, replace
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from SAMIHSLib.metrics import dice
from SAMIHSLib.interaction.predictor import SAMIHSPredictor, SlicePrediction
from SAMIHSLib.interaction.prompts import Point, SlicePrompt
from SAMIHSLib.interaction.regions import (BLOOD_HU, OwnBandGrowth, PixelBox, box_around, click_intensity_region,
                                           constrain_to_region, contains_any, enclosed_by_bone, fills_the_head,
                                           grow_into_own_band, hyperdense_region, mm_to_px, mm_to_whole_px,
                                           NEGATIVE_REACH_MM, remove_nearest_to_negatives)
from SAMIHSLib.io.validation import validate_point_in_slice

DEFAULT_OPENING_RADII_MM: Tuple[float, ...] = (0.45, 0.9, 1.35)
# Box sizes (mm) tried around a click that lands on no hyperdense region at all.
FALLBACK_BOX_SIDES_MM: Tuple[float, ...] = (6.0, 10.0, 15.0, 22.0, 32.0, 45.0, 64.0)
MIN_REGION_PIXELS = 10
# Below this share of blood-band pixels an answer to a click on non-blood HU is not a bleed.
MIN_BLOOD_FRACTION = 0.5


@dataclass(frozen=True)
class ClickSegmentationConfig:
    """Tuning of the intensity-guided click handling (HU and mm, never pixels)."""

    hu_bands: Tuple[Tuple[float, float], ...] = BLOOD_HU.search_bands
    opening_radii_mm: Tuple[float, ...] = DEFAULT_OPENING_RADII_MM
    seed_search_mm: float = 3.0
    box_margin_mm: float = 1.35
    # The model refines the boundary but may not claim tissue farther than this from the region.
    region_tolerance_mm: float = 0.9
    # None: intensity-guided boxes only for models not trained on clicks; True/False forces it.
    # A click-trained model gets the clicks together with each candidate box.
    intensity_guided: Optional[bool] = None
    # When the model's answer misses a positive click: re-prompt, then answer with the click's own
    # intensity region (False only to measure what the model alone gives).
    answer_missed_clicks: bool = True
    # A click on acute blood whose answer holds the click but is mostly not blood (a click-trained
    # model can draw the brain around a tiny clot): ask the second opinion, keep the more blood-like.
    second_opinion_on_unlike_answers: bool = False
    # The answer to a new bleed's positive clicks (no box, no negative click, no mask there yet) grows
    # into the pixels around it that have its own HU (OwnBandGrowth); None: the answer as the model
    # and the acute bands give it. With own_band_growth_on_corrections, corrections' answers grow too.
    own_band_growth: Optional[OwnBandGrowth] = None
    own_band_growth_on_corrections: bool = False


@dataclass
class ClickResult:
    """The chosen prediction, the box that produced it (pixels), how it was found, and a message
    in words when the answer is a fallback or empty ("" when the model answered as asked)."""

    prediction: SlicePrediction
    box: Optional[PixelBox]
    method: str
    message: str = ""


def no_bleed_message(click_hu: float) -> str:
    """What the user reads when a click is on something that is clearly not blood."""
    low, high = BLOOD_HU.possible
    return (f"no bleed found at the click: HU {click_hu:.0f} at that point (blood of any age lies between "
            f"{low:.0f} and {high:.0f} HU)")


def _within_area_limit(items: list, area_px: Callable[[object], int], area_limit_px: Optional[float]) -> list:
    """The ``items`` whose ``area_px`` is within ``area_limit_px`` (all of them when there is no limit)."""
    return items if area_limit_px is None else [item for item in items if area_px(item) <= area_limit_px]


def _regions_within(per_click: List[List[np.ndarray]], area_limit_px: float) -> List[List[np.ndarray]]:
    """Each click's candidate regions that fit within ``area_limit_px``."""
    return [_within_area_limit(regions, lambda region: int(region.sum()), area_limit_px) for regions in per_click]


def _answered_by_base_model(second: ClickResult, why: str, what_happened: str) -> ClickResult:
    """The second opinion's answer, named as lite-base's, with ``why`` in its method and
    ``what_happened`` to the fine-tuned model's answer in words."""
    return replace(second, method=f"base model's {second.method} ({why})",
                   message=f"{what_happened}; answered by lite-base, the model it was fine-tuned from ({second.method})")


class ClickSegmenter:
    """Turns clicks on a slice into a mask with whatever prompts the model understands.

    A positive click never comes back with nothing: when the model's answer misses the click,
    the model it was fine-tuned from (``predictor.second_opinion``, if any), the click's
    hyperdense-region boxes, then that region as a mask prompt, then the region itself answer, and
    ``ClickResult.method`` says which. With ``second_opinion_on_unlike_answers``, an answer to a click
    on acute blood that is mostly not blood is also put to the second opinion. Only a click whose HU
    is clearly not blood gives an empty mask, with the reason in ``ClickResult.message``.
    """

    def __init__(self, predictor: SAMIHSPredictor, config: ClickSegmentationConfig = ClickSegmentationConfig()):
        self.predictor = predictor
        self.config = config

    @property
    def negative_reach_px(self) -> float:
        """The least reach of a negative click on this volume (pixels)."""
        return self._mm_to_px(NEGATIVE_REACH_MM)

    def _mm_to_px(self, mm: float) -> float:
        return mm_to_px(mm, self.predictor.spacing_zyx)

    def _whole_px(self, mm: float) -> int:
        return mm_to_whole_px(mm, self.predictor.spacing_zyx)

    def candidate_regions(self, slice_index: int, click: Point) -> List[np.ndarray]:
        """Distinct hyperdense regions around ``click`` on slice ``slice_index``, one per (band,
        opening) setting."""
        slice_hu = self.predictor.denoised_slice(slice_index)
        regions: List[np.ndarray] = []
        seed_search = self._mm_to_px(self.config.seed_search_mm)
        head_px = self.predictor.head_area_px(slice_index)
        for band in self.config.hu_bands:
            for radius_mm in self.config.opening_radii_mm:
                opening = max(1, self._whole_px(radius_mm))
                region = hyperdense_region(slice_hu, click, band, opening, seed_search)
                if region.sum() < MIN_REGION_PIXELS or fills_the_head(region, head_px) \
                        or enclosed_by_bone(region, slice_hu, self.predictor.spacing_zyx):
                    continue  # nothing there, or the band leaked into the brain (approximate HU, noise)
                if not any(np.array_equal(region, r) for r in regions):
                    regions.append(region)
        return regions

    def _guided(self) -> bool:
        guided = self.config.intensity_guided
        return (not self.predictor.model.config.trained_with_clicks) if guided is None else guided

    def segment(self, slice_index: int, positive: Sequence[Point], negative: Sequence[Point] = (),
                box: Optional[PixelBox] = None, mask_input: Optional[np.ndarray] = None,
                area_limit_px: Optional[float] = None) -> ClickResult:
        """Segment one slice from clicks (pixel column, row) and an optional box / previous mask.

        ``area_limit_px``: the most the answer should cover (e.g. from the same bleed on the next
        slice); an answer within it (from the click's regions, then the box sizes) is preferred to
        any beyond it."""
        prompt = SlicePrompt(list(positive), list(negative), box, mask_input)
        for x, y in prompt.all_points():
            validate_point_in_slice(x, y, self.predictor.slice_shape)
        if not self._guided() or box is not None or not positive:
            result = ClickResult(self.predictor.predict(slice_index, prompt), box, "prompt")
        else:
            result = self._from_click(slice_index, prompt, area_limit_px)
        result = self._apply_negatives(result, negative, positive)
        if positive and self.config.answer_missed_clicks:
            if not contains_any(result.prediction.mask, positive[-1:]):  # the newest click must be answered
                result = self._answer_the_click(slice_index, prompt, result, area_limit_px)
            elif self.config.second_opinion_on_unlike_answers and result.method.startswith("prompt"):
                result = self._second_opinion_if_unlike_blood(slice_index, prompt, result, area_limit_px)
            result = self._refuse_non_blood(slice_index, positive[-1], result)
        if self.config.own_band_growth is not None and positive and not negative and box is None and (
                self.config.own_band_growth_on_corrections or (mask_input is None and area_limit_px is None)):
            result = self._grown_into_own_band(slice_index, prompt, result, area_limit_px)
        return result

    def _grown_into_own_band(self, slice_index: int, prompt: SlicePrompt, result: ClickResult,
                             area_limit_px: Optional[float]) -> ClickResult:
        """``result`` grown into its own HU band (``config.own_band_growth``), or the model's answer to
        the grown region's box when it asks the model; ``result`` as it is when it is empty, nothing
        grows or the growth would pass ``area_limit_px``."""
        mask = result.prediction.mask
        if not mask.any():
            return result
        grown = grow_into_own_band(mask, self.predictor.denoised_slice(slice_index), self.predictor.spacing_zyx,
                                   self.config.own_band_growth)  # type: ignore[arg-type]
        if (area_limit_px is not None and grown.sum() > area_limit_px) or np.array_equal(grown, mask):
            return result
        if not self.config.own_band_growth.ask_the_model:  # type: ignore[union-attr]
            return replace(result, prediction=replace(result.prediction, mask=grown),
                           method=f"{result.method}, grown into its own HU band")
        grown_box = box_around(grown, self._whole_px(self.config.box_margin_mm))
        answer = self.predictor.predict(slice_index, SlicePrompt(*self._clicks_for_model(prompt), box=grown_box))
        if answer.predicted_iou < result.prediction.predicted_iou:
            return result
        held, used_model = constrain_to_region(answer.mask, grown, self._whole_px(self.config.region_tolerance_mm))
        if not contains_any(held, prompt.positive_points[-1:]):
            return result
        return ClickResult(replace(answer, mask=held), grown_box,
                           f"{result.method}, asked again with its own HU band"
                           + ("" if used_model else " (model disagreed)"))

    def _from_click(self, slice_index: int, prompt: SlicePrompt, area_limit_px: Optional[float]) -> ClickResult:
        """The click's hyperdense-region boxes, else the box sizes around it; with an area limit,
        an answer within it from either comes before any beyond it."""
        per_click = self._click_regions(slice_index, prompt)
        if area_limit_px is not None:
            within = self._from_regions(slice_index, prompt, _regions_within(per_click, area_limit_px)) \
                or self._from_box_sizes(slice_index, prompt, area_limit_px)
            if within.prediction.mask.any():
                return within
        return self._from_regions(slice_index, prompt, per_click) or self._from_box_sizes(slice_index, prompt)

    def _refuse_non_blood(self, slice_index: int, click: Point, result: ClickResult) -> ClickResult:
        """An answer to a click on clearly non-blood HU (air, fat, bone) that is itself not
        hyperdense is no bleed: empty, with the reason in words."""
        click_hu = self.predictor.denoised_hu_at(slice_index, int(round(click[0])), int(round(click[1])))
        low, high = BLOOD_HU.possible
        mask = result.prediction.mask
        if low <= click_hu <= high or not mask.any():
            return result
        if self._blood_fraction(slice_index, mask) >= MIN_BLOOD_FRACTION:  # only now: the answer's own HU matter
            return result
        return ClickResult(replace(result.prediction, mask=np.zeros_like(mask)), result.box, "none",
                           no_bleed_message(click_hu) + "; the model's answer there is not hyperdense either")

    def _blood_fraction(self, slice_index: int, mask: np.ndarray) -> float:
        """The share of ``mask`` (non-empty) whose denoised HU lie in the acute blood check band."""
        values = self.predictor.denoised_slice(slice_index)[mask]
        band_low, band_high = BLOOD_HU.check_band
        return float(np.mean((values >= band_low) & (values <= band_high)))

    def _answer_the_click(self, slice_index: int, prompt: SlicePrompt, missed: ClickResult,
                          area_limit_px: Optional[float] = None) -> ClickResult:
        """Fallbacks for a model answer that does not contain the positive click."""
        second = self._second_opinion(slice_index, prompt, area_limit_px)
        if second is not None:
            return _answered_by_base_model(second, "the fine-tuned model's answer missed the click",
                                           "the model's answer missed the click")
        slice_hu = self.predictor.denoised_slice(slice_index)
        negative, positive = prompt.negative_points, prompt.positive_points
        if missed.method == "prompt" and prompt.box is None:
            per_click = self._click_regions(slice_index, prompt)
            guided = (area_limit_px is not None
                      and self._from_regions(slice_index, prompt, _regions_within(per_click, area_limit_px))) \
                or self._from_regions(slice_index, prompt, per_click)
            if guided is not None:
                guided = self._apply_negatives(guided, negative, positive)
                if contains_any(guided.prediction.mask, positive[-1:]):
                    return replace(guided, method=f"{guided.method} (the model's own answer missed the click)")
        region, click_hu = click_intensity_region(slice_hu, positive[-1], min(self.predictor.spacing_zyx[1:]))
        if not region.any():
            empty = replace(missed.prediction, mask=np.zeros_like(region))
            return ClickResult(empty, missed.box, "none", no_bleed_message(click_hu))
        margin = self._whole_px(self.config.box_margin_mm)
        prediction = self.predictor.predict(slice_index, SlicePrompt(
            positive, negative, box=box_around(region, margin), mask_input=region))
        mask, used_model = constrain_to_region(prediction.mask, region, self._whole_px(self.config.region_tolerance_mm))
        result = self._apply_negatives(ClickResult(replace(prediction, mask=mask), box_around(region, margin),
                                                   "region mask prompt" if used_model else "intensity region"),
                                       negative, positive)
        if not contains_any(result.prediction.mask, positive[-1:]):
            result = self._apply_negatives(ClickResult(replace(prediction, mask=region), result.box,
                                                       "intensity region"), negative, positive)
        return replace(result, message=f"the model's answer missed the click; answered by the {result.method} "
                                       f"(HU {click_hu:.0f} at the click)")

    def _second_opinion_if_unlike_blood(self, slice_index: int, prompt: SlicePrompt, answer: ClickResult,
                                        area_limit_px: Optional[float] = None) -> ClickResult:
        """``answer`` (the model's own, holding the newest click), or the second opinion's when the
        click is on acute blood, less than half of ``answer`` is, and more of the second opinion's is."""
        x, y = prompt.positive_points[-1]
        click_hu = self.predictor.denoised_hu_at(slice_index, int(round(x)), int(round(y)))
        band_low, band_high = BLOOD_HU.check_band
        if not band_low <= click_hu <= band_high:
            return answer  # a click on chronic or isodense blood: its answer is not held to the acute band
        own_fraction = self._blood_fraction(slice_index, answer.prediction.mask)
        if own_fraction >= MIN_BLOOD_FRACTION:
            return answer  # (checked first: a second opinion added when needed loads only here)
        second = self._second_opinion(slice_index, prompt, area_limit_px)
        if second is None or self._blood_fraction(slice_index, second.prediction.mask) <= own_fraction:
            return answer
        return _answered_by_base_model(second, "the fine-tuned model's answer was not blood",
                                       f"the model's answer to a click on blood ({click_hu:.0f} HU) was mostly not "
                                       f"blood ({own_fraction:.0%} in {band_low:.0f}-{band_high:.0f} HU)")

    def _second_opinion(self, slice_index: int, prompt: SlicePrompt,
                        area_limit_px: Optional[float] = None) -> Optional[ClickResult]:
        """The answer of the model this one was fine-tuned from (``predictor.second_opinion``),
        through its own click handling, when that answer contains the newest positive click (its
        method as that model's click handling named it); None otherwise."""
        base = self.predictor.second_opinion
        if base is None:
            return None
        config = replace(self.config, intensity_guided=None, answer_missed_clicks=False,
                         second_opinion_on_unlike_answers=False, own_band_growth=None)  # grown once, by the caller
        answer = ClickSegmenter(base, config).segment(slice_index, prompt.positive_points, prompt.negative_points,
                                                      prompt.box, prompt.mask_input, area_limit_px)
        return answer if contains_any(answer.prediction.mask, prompt.positive_points[-1:]) else None

    def _clicks_for_model(self, prompt: SlicePrompt) -> Tuple[List[Point], List[Point]]:
        """(positive, negative) clicks to send with a box: a click-trained model's, none for one trained on boxes."""
        if self.predictor.model.config.trained_with_clicks:
            return list(prompt.positive_points), list(prompt.negative_points)
        return [], []

    def _click_regions(self, slice_index: int, prompt: SlicePrompt) -> List[List[np.ndarray]]:
        """Each positive click's candidate regions (:meth:`candidate_regions`)."""
        return [self.candidate_regions(slice_index, click) for click in prompt.positive_points]

    def _from_regions(self, slice_index: int, prompt: SlicePrompt,
                      per_click: List[List[np.ndarray]]) -> Optional[ClickResult]:
        """The best of the model's answers to the boxes of the first click's ``per_click`` regions
        (each joined with the other clicks' regions of the same setting); None without any."""
        if not per_click[0]:
            return None
        margin = self._whole_px(self.config.box_margin_mm)
        best: Optional[Tuple[float, ClickResult]] = None
        for index, region in enumerate(per_click[0]):
            # Further positive clicks add their own region from the same setting (or their best).
            for others in per_click[1:]:
                if others:
                    region = region | others[min(index, len(others) - 1)]
            candidate_box = box_around(region, margin)
            prediction = self.predictor.predict(slice_index, SlicePrompt(
                *self._clicks_for_model(prompt), box=candidate_box, mask_input=prompt.mask_input))
            score = prediction.predicted_iou * dice(prediction.mask, region)
            if best is None or score > best[0]:
                mask, used_model = constrain_to_region(
                    prediction.mask, region, self._whole_px(self.config.region_tolerance_mm))
                method = "hyperdense-region box" if used_model else "hyperdense region (model disagreed)"
                best = (score, ClickResult(replace(prediction, mask=mask), candidate_box, method))
        return best[1] if best else None

    def _from_box_sizes(self, slice_index: int, prompt: SlicePrompt,
                        area_limit_px: Optional[float] = None) -> ClickResult:
        x, y = prompt.positive_points[0]
        h, w = self.predictor.slice_shape
        head_px = self.predictor.head_area_px(slice_index)
        answers: List[ClickResult] = []
        for side_mm in FALLBACK_BOX_SIDES_MM:
            half = self._mm_to_px(side_mm) / 2.0
            candidate_box = (max(0.0, x - half), max(0.0, y - half), min(w - 1.0, x + half), min(h - 1.0, y + half))
            prediction = self.predictor.predict(slice_index, SlicePrompt(box=candidate_box))
            if fills_the_head(prediction.mask, head_px):
                continue  # a leak into the brain is no answer
            answers.append(ClickResult(prediction, candidate_box, "box sizes around click"))
        answers = _within_area_limit(answers, lambda answer: int(answer.prediction.mask.sum()), area_limit_px)
        # The first of equally confident answers wins (the smallest box), as it always has.
        best = max(answers, key=lambda answer: answer.prediction.predicted_iou, default=None)
        if best is None:  # every box leaked: nothing from the model; the missed-click fallbacks answer
            best = ClickResult(replace(prediction, mask=np.zeros_like(prediction.mask)), None,
                               "box sizes around click (every answer filled the head)")
        return best

    def _apply_negatives(self, result: ClickResult, negative: Sequence[Point],
                         positive: Sequence[Point] = ()) -> ClickResult:
        if not negative:
            return result
        mask = remove_nearest_to_negatives(result.prediction.mask, positive, negative, self.negative_reach_px)
        return replace(result, prediction=replace(result.prediction, mask=mask), method=result.method + " - negatives")
