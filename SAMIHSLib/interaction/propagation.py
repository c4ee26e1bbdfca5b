"""Propagation of a slice mask up and down through the axial slices of a volume.

Each next slice is prompted from the previous slice's mask: the box around it, and the box of
the region of the bleed's own HU that the previous mask seeds on the new slice; the answer the
model is most confident in and that agrees best with that region wins. With ``learn_appearance``
the band is learned on the seed slice (:mod:`SAMIHSLib.interaction.appearance`), so that a
hypodense or isodense collection propagates like an acute clot; the default holds every bleed to
the acute bands, which the 3D evaluation's training folds chose (docs/accuracy-3d.md). Only
the components that touch the previous slice's mask (dilated by ``neighbourhood_mm``) are kept,
so one click never reaches a separate bleed.
Propagation in a direction stops at the first slice that fails a rule: empty/tiny mask, a mask
mostly outside the bleed's band, low predicted IoU, sudden area jump, or leaving the region.
Before a slice is dropped for a rule in ``PropagationConfig.fallback_rules``, the fallback
prompts are tried under the same rules; then, for a rule in ``second_opinion_rules``, the same
prompts are asked of the predictor's second opinion (lite-base, for a click-trained model).
"""

import threading
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, Optional, Set, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.metrics import dice
from SAMIHSLib.progress import ProgressCallback
from SAMIHSLib.interaction.appearance import (ACUTE_APPEARANCE, AppearanceConfig, BleedAppearance, contrast_hu,
                                              learn_appearance)
from SAMIHSLib.interaction.predictor import SAMIHSPredictor, SlicePrediction
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.interaction.regions import BLOOD_HU, box_around, constrain_to_region, hyperdense_region, keep_components_near, mm_to_whole_px

PROMPT_MODES = ("box", "box+mask", "box+region")
UNCHANGED_DICE = 0.98
EMPTY_REASON = "empty or tiny mask"
# The stop rules by name (what ``PropagationConfig.fallback_rules`` lists).
STOP_RULES = ("empty", "unlike the bleed", "no contrast", "low predicted IoU", "area jump", "left the region")


class PropagationCancelled(RuntimeError):
    """The user cancelled; ``partial`` holds the slices done so far."""

    def __init__(self, partial: "SegmentOutcome") -> None:
        super().__init__("Propagation cancelled.")
        self.partial = partial


@dataclass(frozen=True)
class PropagationConfig:
    """Stop rules and prompting of slice-to-slice propagation (mm, mm^2, ratios)."""

    min_area_mm2: float = 6.0
    min_predicted_iou: float = 0.55
    max_area_growth: float = 2.2
    neighbourhood_mm: float = 4.0
    min_inside_fraction: float = 0.6
    # A slice whose mask is mostly outside the bleed's HU band is past the bleed.
    min_blood_fraction: float = 0.5
    # True: the band reaches the seed mask's own HU spread (with the rules below); False (chosen on
    # the training folds of the 3D evaluation): every bleed is held to the acute blood bands.
    learn_appearance: bool = False
    appearance: AppearanceConfig = AppearanceConfig()
    # A propagated mask keeps the clicked bleed's contrast with the tissue around it: at least this
    # many HU and this share of the seed's, with its sign (a chronic collection is darker than brain,
    # every other bleed denser; a seed with no clear contrast is held to "denser"). None: no rule.
    min_contrast_hu: Optional[float] = None
    min_contrast_fraction: float = 0.1
    box_margin_mm: float = 1.35
    region_tolerance_mm: float = 0.9
    # The seeded region stays within this distance of the previous slice's mask: a bleed's outline
    # moves a few mm between slices, and a band that reaches brain must not flood the slice.
    region_reach_mm: Optional[float] = None
    # A seeded region larger than the area-growth limit allows has run into brain: not used.
    drop_flooding_region: bool = False
    # "box": the previous mask's box; "box+mask": plus that mask as a dense prompt; "box+region":
    # plus the box of the hyperdense region it seeds (measured best: bench/bench_propagation.py).
    prompt_mode: str = "box+region"
    max_slices_each_way: Optional[int] = None
    # The rules (of STOP_RULES) after which the fallback prompts (the previous mask as a dense
    # prompt, then the region of the bleed's HU it seeds) get a try before the slice is dropped:
    # the model's unsure or swollen answer is often a slice the bleed still covers (chosen on the
    # training folds of the 3D evaluation over empty slices only: docs/accuracy-3d.md).
    fallback_rules: Tuple[str, ...] = ("empty", "low predicted IoU", "area jump")
    # A positive click on a slice the bleed was missed on (it has a mask on the next slice) prefers
    # answers within max_area_growth of that mask, as a propagated slice would be held to.
    hold_missed_slice_clicks_to_growth: bool = True
    # The rules after which a slice the model (and the fallbacks) failed on is asked of the predictor's
    # second opinion with the same prompts, under the same rules: a click-trained model's answer on a
    # neighbouring slice can stray where lite-base's box answer follows the bleed. () = never.
    second_opinion_rules: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("fallback_rules", "second_opinion_rules"):
            unknown = sorted(set(getattr(self, name)) - set(STOP_RULES))
            if unknown:
                raise ValueError(f"Unknown stop rule(s) {unknown} in {name}; use {STOP_RULES}.")


@dataclass
class SegmentOutcome:
    """What a click, a propagation or both gave: ``mask`` (k, j, i) bool; ``slice_iou`` predicted
    IoU per filled slice; ``stop_reasons`` per direction ("up" = increasing k, "down" =
    decreasing k); ``slice_methods`` the slices answered by a fallback and how; ``message`` what
    the user must be told ("" if nothing); ``appearance`` the bleed's HU band the slices were held
    to (None if nothing propagated); ``detector_added`` what the bleed detector's regions added to
    the answer, in words ("" if nothing)."""

    mask: np.ndarray
    slice_iou: Dict[int, float] = field(default_factory=dict)
    stop_reasons: Dict[str, str] = field(default_factory=dict)
    slice_methods: Dict[int, str] = field(default_factory=dict)
    message: str = ""
    appearance: Optional[BleedAppearance] = None  # the band propagation held the slices to
    detector_added: str = ""


class SlicePropagator:
    """Propagates masks through ``predictor``'s volume under a :class:`PropagationConfig`."""

    def __init__(self, predictor: SAMIHSPredictor, config: PropagationConfig = PropagationConfig()) -> None:
        self.predictor = predictor
        self.config = config

    @property
    def _pixel_area_mm2(self) -> float:
        return self.predictor.spacing_zyx[1] * self.predictor.spacing_zyx[2]

    def _px(self, mm: float) -> int:
        return mm_to_whole_px(mm, self.predictor.spacing_zyx)

    def appearance_of(self, k: int, mask: np.ndarray) -> BleedAppearance:
        """The HU band slices propagated from ``mask`` on slice ``k`` are held to."""
        if not self.config.learn_appearance:
            return BleedAppearance(BLOOD_HU.propagation_band[0], BLOOD_HU.propagation_band[1],
                                   float(np.mean(BLOOD_HU.propagation_band)))
        return learn_appearance(self.predictor.denoised_slice(k), mask, self.predictor.spacing_zyx,
                                self.config.appearance)

    def _next_slice(self, k: int, previous: np.ndarray,
                    appearance: BleedAppearance) -> Tuple[SlicePrediction, np.ndarray, str, str]:
        """Predict slice ``k`` from the neighbouring slice's mask ``previous``: (prediction, kept
        mask, "" if accepted else the stop reason, which fallback answered or "" for the model).

        Before a slice is dropped for a rule of ``fallback_rules``, the previous mask as a dense
        prompt with its box, then the region of the bleed's HU it seeds, are tried under the same
        stop rules; then, for a rule of ``second_opinion_rules``, the predictor's second opinion
        with the model's own prompts."""
        prediction, kept, (rule, reason), seeded = self._next_slice_from_model(k, previous, appearance)
        if reason and rule in self.config.fallback_rules:
            prediction, kept, reason, method = self._fallbacks(k, previous, appearance, prediction, reason, seeded)
            if not reason:
                return prediction, kept, reason, method
        if reason and rule in self.config.second_opinion_rules and self.predictor.second_opinion is not None:
            other = SlicePropagator(self.predictor.second_opinion, self.config)
            # the same slice, previous mask and band: the region the model's attempt grew is the second opinion's too
            answer, other_kept, (_, other_reason), _ = other._next_slice_from_model(k, previous, appearance, seeded)
            if not other_reason:
                return answer, other_kept, "", "second opinion (lite-base)"
            reason = f"{reason}; the second opinion too: {other_reason}"
        return prediction, kept, reason, ""

    def _fallbacks(self, k: int, previous: np.ndarray, appearance: BleedAppearance, prediction: SlicePrediction,
                   reason: str, seeded: Optional[np.ndarray]) -> Tuple[SlicePrediction, np.ndarray, str, str]:
        """The fallback prompts for a slice the model's answer failed on ``reason``: (answer, kept
        mask, "" and the fallback's name if one passes the stop rules; else ``prediction``, an empty
        mask, the reason with what was tried, "")."""
        margin = self._px(self.config.box_margin_mm)
        region = seeded if seeded is not None else self._seeded_region(k, previous, appearance)
        attempts = [("previous mask as prompt", lambda: self.predictor.predict(
            k, SlicePrompt(box=box_around(previous, margin), mask_input=previous)))]
        if region.any():  # the region stands in for the model: hold it to the same IoU floor
            attempts.append(("region of the bleed's HU", lambda: replace(prediction, mask=region, predicted_iou=max(
                prediction.predicted_iou, self.config.min_predicted_iou))))
        for method, attempt in attempts:
            answer = attempt()
            kept = keep_components_near(answer.mask, previous, self._px(self.config.neighbourhood_mm))
            if not self._stop_reason(k, answer, kept, previous, appearance)[1]:
                return answer, kept, "", method
        tried = ", ".join(method for method, _ in attempts)
        return prediction, np.zeros_like(previous), f"{reason} (also tried: {tried})", ""

    def _next_slice_from_model(self, k: int, previous: np.ndarray, appearance: BleedAppearance,
                               seeded: Optional[np.ndarray] = None
                               ) -> Tuple[SlicePrediction, np.ndarray, Tuple[str, str], Optional[np.ndarray]]:
        """The model's answer on slice ``k``: (prediction, kept mask, the stop rule it fails by name and in
        words, the seeded region of the bleed's HU when the prompt mode used one, else None).
        ``seeded``: that region when another model's attempt on the same slice already grew it."""
        margin = self._px(self.config.box_margin_mm)
        if self.config.prompt_mode not in PROMPT_MODES:
            raise ValueError(f"Unknown prompt mode {self.config.prompt_mode!r}; use one of {PROMPT_MODES}.")
        dense = previous if self.config.prompt_mode == "box+mask" else None
        prompts = [SlicePrompt(box=box_around(previous, margin), mask_input=dense)]
        if self.config.prompt_mode != "box+region":
            seeded = None
        elif seeded is None:
            seeded = self._seeded_region(k, previous, appearance)
        region = seeded if seeded is not None else np.zeros_like(previous)
        if seeded is not None and region.sum() * self._pixel_area_mm2 >= self.config.min_area_mm2:
            prompts.append(SlicePrompt(box=box_around(region, margin)))
        best: Optional[Tuple[float, SlicePrediction]] = None
        for prompt in prompts:
            prediction = self.predictor.predict(k, prompt)
            agreement = dice(prediction.mask, region) if region.any() else 1.0
            score = prediction.predicted_iou * agreement
            if best is None or score > best[0]:
                best = (score, prediction)
        assert best is not None
        prediction = best[1]
        if region.any():
            constrained, _ = constrain_to_region(prediction.mask, region, self._px(self.config.region_tolerance_mm))
            prediction = replace(prediction, mask=constrained)
        kept = keep_components_near(prediction.mask, previous, self._px(self.config.neighbourhood_mm))
        return prediction, kept, self._stop_reason(k, prediction, kept, previous, appearance), seeded

    def _seeded_region(self, k: int, previous: np.ndarray, appearance: BleedAppearance) -> np.ndarray:
        """The region of the bleed's HU band on slice ``k`` grown from the previous mask's interior."""
        slice_hu = self.predictor.denoised_slice(k)
        interior = ndi.binary_erosion(previous, iterations=2)
        seeds = interior if interior.any() else previous
        rows, cols = np.nonzero(seeds)
        centre = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
        region = hyperdense_region(slice_hu, (float(cols[centre]), float(rows[centre])), appearance.band,
                                   max(1, self._px(0.9)), self._px(3.0))
        if self.config.region_reach_mm is not None:
            region &= ndi.binary_dilation(previous, iterations=max(1, self._px(self.config.region_reach_mm)))
        region = keep_components_near(region, previous, self._px(self.config.neighbourhood_mm))
        if self.config.drop_flooding_region and region.sum() > self.config.max_area_growth * previous.sum():
            return np.zeros_like(region)  # the band ran into brain: it says nothing of the bleed's outline
        return region

    def _stop_reason(self, k: int, prediction: SlicePrediction, kept: np.ndarray, previous: np.ndarray,
                     appearance: BleedAppearance) -> Tuple[str, str]:
        """The first stop rule slice ``k``'s ``kept`` mask fails, by name (of STOP_RULES) and in
        words; ("", "") if it passes them all."""
        area = kept.sum() * self._pixel_area_mm2
        if area < self.config.min_area_mm2:
            return "empty", EMPTY_REASON
        if not self.config.learn_appearance:  # seeded with the narrower acute band, checked with the wider
            appearance = ACUTE_APPEARANCE
        slice_hu = self.predictor.denoised_slice(k)
        blood = appearance.fraction_in_band(slice_hu[kept])
        if blood < self.config.min_blood_fraction:
            return "unlike the bleed", (f"unlike the clicked bleed ({blood:.0%} of the mask in its "
                                        f"{appearance.describe()})")
        if self.config.min_contrast_hu is not None:
            seed = appearance.contrast_hu
            sign = -1.0 if seed <= -self.config.min_contrast_hu else 1.0
            here = contrast_hu(slice_hu, kept, self.predictor.spacing_zyx, self.config.appearance.ring_mm)
            needed = max(self.config.min_contrast_hu, self.config.min_contrast_fraction * abs(seed))
            if sign * here < needed:
                return "no contrast", (f"no contrast with the tissue around it ({here:+.0f} HU against the "
                                       f"clicked bleed's {seed:+.0f} HU)")
        if prediction.predicted_iou < self.config.min_predicted_iou:
            return "low predicted IoU", f"low predicted IoU {prediction.predicted_iou:.2f}"
        if kept.sum() > self.config.max_area_growth * max(1, previous.sum()):
            return "area jump", f"area jump x{kept.sum() / max(1, previous.sum()):.1f}"
        near = ndi.binary_dilation(previous, iterations=max(1, self._px(self.config.neighbourhood_mm)))
        inside = (kept & near).sum() / max(1, kept.sum())
        if inside < self.config.min_inside_fraction:
            return "left the region", f"left the region ({inside:.0%} inside)"
        return "", ""

    def propagate(self, seed_slice: int, seed_mask: np.ndarray, directions: Iterable[int] = (1, -1),
                  locked_slices: Optional[Set[int]] = None, base_mask: Optional[np.ndarray] = None,
                  progress: Optional[ProgressCallback] = None,
                  cancel: Optional[threading.Event] = None,
                  until_unchanged: Optional[np.ndarray] = None,
                  stop_slices: Optional[Set[int]] = None) -> SegmentOutcome:
        """Propagate ``seed_mask`` on ``seed_slice`` in ``directions`` (+1 up, -1 down).

        ``stop_slices`` (slices the user fixed with clicks) end a direction: they and the slices
        beyond keep what they have.

        ``until_unchanged``: the object's previous 3D mask; a direction stops at the first slice
        whose new mask matches it (Dice >= UNCHANGED_DICE), and the slices beyond keep it.

        ``locked_slices`` (hand-edited) are never overwritten: propagation passes through them,
        using their mask as the next prompt. ``base_mask`` is the starting 3D mask (copied; its
        seed slice is kept as given). On each slice only the neighbourhood of the propagated
        object is replaced, so separate bleeds already in the mask are untouched.
        """
        num_slices = self.predictor.num_slices
        mask = np.zeros((num_slices,) + self.predictor.slice_shape, bool) if base_mask is None else base_mask.copy()
        locked = locked_slices or set()
        if base_mask is None and seed_slice not in locked:
            mask[seed_slice] = seed_mask
        result = SegmentOutcome(mask)
        appearance = self.appearance_of(seed_slice, seed_mask)
        result.appearance = appearance
        limit = self.config.max_slices_each_way or num_slices
        total = sum(min(limit, (num_slices - 1 - seed_slice) if d > 0 else seed_slice) for d in directions)
        done = 0
        for direction in directions:
            name = "up" if direction > 0 else "down"
            previous, k, steps = seed_mask, seed_slice + direction, 0
            result.stop_reasons[name] = "end of volume"
            while 0 <= k < num_slices and steps < limit:
                if cancel is not None and cancel.is_set():
                    result.stop_reasons[name] = "cancelled"
                    raise PropagationCancelled(result)
                if stop_slices and k in stop_slices:
                    result.stop_reasons[name] = f"slice {k}: fixed by your clicks there"
                    break
                if k in locked:
                    kept, reason = mask[k], "" if mask[k].any() else "locked empty slice"
                else:
                    prediction, kept, reason, method = self._next_slice(k, previous, appearance)
                    if method:
                        result.slice_methods[k] = method
                    if not reason:
                        # Replace only near this object: other bleeds on the slice stay as they are.
                        zone = ndi.binary_dilation(previous, iterations=self._px(self.config.neighbourhood_mm))
                        mask[k] = (mask[k] & ~(zone | kept)) | kept
                        result.slice_iou[k] = prediction.predicted_iou  # type: ignore[union-attr]
                        if until_unchanged is not None and dice(kept, until_unchanged[k]) >= UNCHANGED_DICE:
                            for later in range(k + direction, num_slices if direction > 0 else -1, direction):
                                mask[later] |= until_unchanged[later]  # the rest is as it was
                            reason = "unchanged from here on"
                done += 1
                if progress is not None:
                    progress(done, total, f"slice {k}")
                if reason:
                    result.stop_reasons[name] = f"slice {k}: {reason}"
                    break
                previous, k, steps = kept, k + direction, steps + 1
        return result
