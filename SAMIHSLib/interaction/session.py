"""A hemorrhage segmentation session on one CT volume: click, propagate, correct, undo.

All edits go through :meth:`HemorrhageSession._commit`, which records a small diff (the
bounding box of the changed voxels, before and after), so undo/redo restores masks exactly
without copying whole volumes. Hand-edited (locked) slices are never overwritten.
"""

import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig, ClickSegmenter
from SAMIHSLib.interaction.detected_regions import DetectorRegions, negative_reach, regions_touching
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.propagation import PropagationCancelled, PropagationConfig, SegmentOutcome, SlicePropagator
from SAMIHSLib.interaction.prompts import Point
from SAMIHSLib.progress import ProgressCallback
from SAMIHSLib.interaction.regions import (PixelBox, deepest_point, disc_around, keep_components_near, mm_to_px,
                                           mm_to_whole_px, occupied_extent, points_mask, remove_nearest_to_negatives)
from SAMIHSLib.io.validation import validate_point_in_slice, validate_slice_index

# Clicks placed on each slice: slice -> (positive, negative), pixel (column, row).
ClickHistory = Dict[int, Tuple[Tuple[Point, ...], Tuple[Point, ...]]]

UNDO_DEPTH = 50
# A corrective positive click adds bleed within this distance of itself (mm) or, when it lies
# farther from the object, within CORRECTION_REACH_GAPS times its distance to the object.
CORRECTION_REACH_MM = 3.0
CORRECTION_REACH_GAPS = 3.0


@dataclass
class MaskDiff:
    """One undoable edit: the changed voxel extent (k0:k1, j0:j1, i0:i1) before and after, the
    locked slices and the click history before and after."""

    extent: Tuple[slice, slice, slice]
    before: np.ndarray
    after: np.ndarray
    locked_before: frozenset
    locked_after: frozenset
    clicks_before: ClickHistory
    clicks_after: ClickHistory
    label: str


def changed_extent(before: np.ndarray, after: np.ndarray) -> Optional[Tuple[slice, slice, slice]]:
    """The smallest (k, j, i) box holding every voxel that differs, or None if none does."""
    return occupied_extent(before != after)  # type: ignore[return-value]


def object_through(mask: np.ndarray, slice_index: int, anchor: np.ndarray, reach_px: int) -> np.ndarray:
    """The 3D object of ``mask`` (k, j, i) at ``anchor`` on slice ``slice_index``: its components
    (diagonal neighbours joined, as thick slices need) that touch ``anchor`` there or, where none
    does, that touch the anchor dilated by ``reach_px`` on the slices next to it."""
    box = occupied_extent(mask)
    if not anchor.any() or box is None:
        return np.zeros_like(mask)
    # Labelled within the mask's own box: the same components, without an int32 copy of the whole
    # scan (a thin-slice CT's would be 300 MB, and np.isin another 300 MB).
    labels, count = ndi.label(mask[box], structure=np.ones((3, 3, 3), bool))

    def slice_labels(k: int) -> np.ndarray:
        on_slice = np.zeros(mask.shape[1:], labels.dtype)
        if box[0].start <= k < box[0].stop:
            on_slice[box[1:]] = labels[k - box[0].start]
        return on_slice

    touching = np.unique(slice_labels(slice_index)[anchor])
    if not touching.any() and mask.shape[0] > 1:
        near = ndi.binary_dilation(anchor, iterations=reach_px)
        ks = [k for k in (slice_index - 1, slice_index + 1) if 0 <= k < mask.shape[0]]
        touching = np.unique(np.concatenate([slice_labels(k)[near] for k in ks]))
    keep = np.zeros(count + 1, bool)
    keep[touching[touching > 0]] = True
    found = np.zeros_like(mask)
    found[box] = keep[labels]
    return found


def _diff(old: np.ndarray, new: np.ndarray, locked_before: Set[int], locked_after: Set[int],
          clicks_before: ClickHistory, clicks_after: ClickHistory, label: str) -> Optional[MaskDiff]:
    extent = changed_extent(old, new)
    if extent is None and locked_before == locked_after and clicks_before == clicks_after:
        return None
    if extent is None:
        extent = (slice(0, 0), slice(0, 0), slice(0, 0))
    return MaskDiff(extent, old[extent].copy(), new[extent].copy(), frozenset(locked_before),
                    frozenset(locked_after), dict(clicks_before), dict(clicks_after), label)


class HemorrhageSession:
    """Owns the 3D hemorrhage mask of one volume and every edit made to it."""

    def __init__(self, predictor: SAMIHSPredictor,
                 click_config: ClickSegmentationConfig = ClickSegmentationConfig(),
                 propagation_config: PropagationConfig = PropagationConfig(),
                 detector_regions: Optional[DetectorRegions] = None) -> None:
        self.predictor = predictor
        # The bleed detector's regions joined to a click's answer (None: the model's answer alone).
        self.detector_regions = detector_regions
        self.click_segmenter = ClickSegmenter(predictor, click_config)
        self.propagator = SlicePropagator(predictor, propagation_config)
        self.mask = np.zeros((predictor.num_slices,) + predictor.slice_shape, dtype=bool)
        self.locked_slices: Set[int] = set()
        self.slice_iou: dict = {}
        self.last_stop_reasons: dict = {}
        # Clicks placed on each slice so far; undo and redo restore it with the mask.
        self.slice_clicks: ClickHistory = {}
        # Voxels this session must never claim (e.g. other segments the user drew); None = no limit.
        self.protected: Optional[np.ndarray] = None
        self._undo: List[MaskDiff] = []
        self._redo: List[MaskDiff] = []

    # -- edits ----------------------------------------------------------------------------------
    def _slice(self, slice_index: int) -> int:
        """``slice_index`` as a plain int inside the volume (negative indices are refused, never wrapped)."""
        return validate_slice_index(slice_index, self.mask.shape[0])

    def click(self, slice_index: int, positive: Sequence[Point], negative: Sequence[Point] = (),
              box: Optional[PixelBox] = None, propagate: bool = True,
              directions: Sequence[int] = (1, -1), progress: Optional[ProgressCallback] = None,
              cancel: Optional[threading.Event] = None) -> SegmentOutcome:
        """Segment (or correct) slice ``slice_index`` from clicks/box, then optionally propagate.

        On a slice that already has a mask, positive clicks add to it and negative clicks remove
        from it; untouched parts stay. Locked slices are left as they are. The result's
        ``message`` says in words when the answer came from a fallback or is empty.

        With ``propagate``, a new bleed spreads in ``directions``; a correction of an existing one
        re-propagates only away from the slices of it the user already clicked (those were
        checked), replacing what it had there, until a slice comes out as it was. A direction
        ends at any slice the user clicked. Click and propagation are one undo step.
        """
        slice_index = self._slice(slice_index)
        if slice_index in self.locked_slices:
            raise ValueError(f"Slice {slice_index} was edited by hand and is locked: SAMIHS does not overwrite it. "
                             "Undo the hand edit, or edit that slice in the Segment Editor.")
        current = self.mask[slice_index]
        for x, y in list(positive) + list(negative):
            validate_point_in_slice(x, y, current.shape)
        anchor = points_mask(current.shape, list(positive) + list(negative))
        box_only = box is not None and not positive and not negative
        if box_only:  # a box alone asks for what is inside it: the object is what the box covers
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            anchor[max(0, y0):y1 + 1, max(0, x0):x1 + 1] = True
        # The object being corrected: existing components near the clicks (none = a new bleed).
        reach = mm_to_whole_px(self.propagator.config.neighbourhood_mm, self.predictor.spacing_zyx)
        target = keep_components_near(current, anchor, reach) if anchor.any() else current
        old_positive, old_negative = self.slice_clicks.get(slice_index, ((), ()))
        history = (tuple(old_positive) + tuple(positive), tuple(old_negative) + tuple(negative))
        clicks_after = dict(self.slice_clicks)
        clicks_after[slice_index] = history
        # A correction is answered from every click on the object so far (as SAM refines), the
        # current mask as the dense prompt; a fresh bleed from the new clicks alone.
        prompt_clicks = (history if target.any() else (tuple(positive), tuple(negative)))
        held = positive and not target.any() and self.propagator.config.hold_missed_slice_clicks_to_growth
        result = self.click_segmenter.segment(
            slice_index, list(prompt_clicks[0]) if positive else [], list(prompt_clicks[1]), box,
            mask_input=target if target.any() else None,
            area_limit_px=self._area_limit_from_neighbours(slice_index, positive) if held else None)
        predicted = result.prediction.mask
        if positive:  # keep what the new clicks point at, never a distant bleed on the same slice
            positive_anchor = points_mask(current.shape, positive)
            predicted = keep_components_near(predicted | positive_anchor, positive_anchor, 1) & predicted
            # Never give back what an earlier negative click on this slice took away: a new positive
            # click claims only what is nearer to it than to those negatives.
            predicted = remove_nearest_to_negatives(predicted, positive, old_negative)
            if target.any():
                predicted = target | self._local_addition(predicted & ~target, target, positive)
        if target.any():
            obj = (target | predicted) if positive or box_only else target
            # On a slice propagation filled there is no positive click: the part that continues the
            # bleed from the slices next to it stands for one, so a cut takes the leak, not the slice.
            keep = history[0] or self._continuing_core(slice_index, target, history[1])
            obj = remove_nearest_to_negatives(obj, keep, history[1], self.click_segmenter.negative_reach_px) \
                if negative else obj
        else:
            obj = predicted
        new_mask = self.mask.copy()
        new_mask[slice_index] = (current & ~target) | obj
        self.slice_iou[slice_index] = result.prediction.predicted_iou
        label = f"click on slice {slice_index}"
        fixed = set(self.slice_clicks) - {slice_index}
        old_object = self._object_through(slice_index, target | obj)
        if propagate and target.any():  # a correction: not back towards slices the user already fixed
            directions = [d for d in directions if not self._fixed_beyond(slice_index, d, old_object, fixed)]
            new_mask = self._cleared_beyond(new_mask, slice_index, directions, old_object, fixed)
        if propagate and obj.any() and directions:
            try:
                outcome = self.propagator.propagate(slice_index, obj, directions, self.locked_slices,
                                                    base_mask=new_mask, progress=progress, cancel=cancel,
                                                    until_unchanged=old_object if old_object.any() else None,
                                                    stop_slices=fixed)
            except PropagationCancelled as cancelled:
                outcome = cancelled.partial
            new_mask = outcome.mask
            self.slice_iou.update(outcome.slice_iou)
            self.last_stop_reasons = outcome.stop_reasons
            label += " + propagation"
        else:
            outcome = SegmentOutcome(new_mask, {slice_index: result.prediction.predicted_iou}, {})
        outcome.slice_methods[slice_index] = result.method
        outcome.message = result.message
        if propagate and positive and obj.any() and self._joins_detector(new_bleed=not target.any()):
            new_mask, outcome.detector_added = self._join_detected_regions(new_mask, slice_index, obj, fixed,
                                                                           clicks_after)
            outcome.mask = new_mask
        if positive and not obj.any() and not outcome.message:
            outcome.message = "no bleed found at the click"
        self._commit(new_mask, self.locked_slices, label, clicks_after)
        return outcome

    def _joins_detector(self, new_bleed: bool) -> bool:
        """Whether this positive click's answer is joined with the detector's regions."""
        regions = self.detector_regions
        return regions is not None and (new_bleed or regions.join.on_positive_corrections)

    def _join_detected_regions(self, mask: np.ndarray, slice_index: int, obj: np.ndarray, fixed: Set[int],
                               clicks: ClickHistory) -> Tuple[np.ndarray, str]:
        """``mask`` (changed in place: the click's new mask) with the detector's regions that overlap
        the clicked object, and what they added in words ("" if nothing): never on a locked or
        user-clicked slice, nor near a negative click."""
        assert self.detector_regions is not None
        answer = self._object_through(slice_index, obj, mask)
        changeable = np.ones(mask.shape[0], bool)
        changeable[sorted(self.locked_slices | fixed)] = False
        negatives = [(k, point) for k, (_, negative) in clicks.items() for point in negative]
        avoid = negative_reach(mask.shape, negatives, self.click_segmenter.negative_reach_px) if negatives else None
        first, added = regions_touching(answer, self.detector_regions.evidence,
                                        self.detector_regions.join.pixel_threshold, changeable, avoid)
        block = slice(first, first + added.shape[0])
        added &= ~mask[block]
        if not added.any():
            return mask, ""
        slices = first + np.nonzero(added.any(axis=(1, 2)))[0]
        added_ml = float(added.sum()) * float(np.prod(self.predictor.spacing_zyx)) / 1000.0
        mask[block] |= added
        return mask, f"the bleed detector's region added {added_ml:.2f} mL on slices {slices[0]}-{slices[-1]}"

    def _object_through(self, slice_index: int, anchor: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
        """The 3D object of ``mask`` (default: the current mask) at ``anchor`` on slice ``slice_index``: its
        components (diagonal neighbours joined, as thick slices need) that touch ``anchor`` on that
        slice or, where none does (a bleed missed on this slice), its neighbourhood on the slices
        next to it."""
        reach = mm_to_whole_px(self.propagator.config.neighbourhood_mm, self.predictor.spacing_zyx, minimum=1)
        return object_through(self.mask if mask is None else mask, slice_index, anchor, reach)

    def _area_limit_from_neighbours(self, slice_index: int, positive: Sequence[Point]) -> Optional[float]:
        """The most a click on a slice the bleed was missed on should cover: propagation's area
        growth limit times the bleed's area on the next slice (its components within the
        neighbourhood of the clicks; the larger neighbour). None when no neighbour has it there:
        a new bleed may be any size. (A click above a bleed near the vertex otherwise got the
        whole brain section, whose partial volume lies in the blood band.)"""
        reach = mm_to_whole_px(self.propagator.config.neighbourhood_mm, self.predictor.spacing_zyx)
        anchor = points_mask(self.predictor.slice_shape, positive)
        areas = [int(keep_components_near(self.mask[k], anchor, reach).sum())
                 for k in (slice_index - 1, slice_index + 1) if 0 <= k < self.mask.shape[0]]
        largest = max(areas, default=0)
        return self.propagator.config.max_area_growth * largest if largest else None

    def _continuing_core(self, slice_index: int, target: np.ndarray, negative: Sequence[Point] = ()) -> List[Point]:
        """The deepest point of the part of ``target`` that the neighbouring slices' masks also
        cover, outside the reach of the ``negative`` clicks (none when nothing is left there): the
        user's "not this" on the continuing part itself wins over its stand-in for a positive click."""
        neighbours = [self.mask[k] for k in (slice_index - 1, slice_index + 1) if 0 <= k < self.mask.shape[0]]
        if not neighbours:  # a single slice
            return []
        core = target & np.logical_or.reduce(neighbours)
        if negative and core.any():
            reach = max(1, int(round(self.click_segmenter.negative_reach_px)))
            core &= ~ndi.binary_dilation(points_mask(core.shape, list(negative)), iterations=reach)
        return [deepest_point(core)] if core.any() else []

    @staticmethod
    def _slices_towards(slice_index: int, direction: int, num_slices: int) -> range:
        return range(slice_index + direction, num_slices if direction > 0 else -1, direction)

    def _fixed_beyond(self, slice_index: int, direction: int, old_object: np.ndarray, fixed: Set[int]) -> bool:
        """Whether the user clicked a slice of ``old_object`` in ``direction`` from ``slice_index``."""
        return any(k in fixed and old_object[k].any()
                   for k in self._slices_towards(slice_index, direction, self.mask.shape[0]))

    def _cleared_beyond(self, mask: np.ndarray, slice_index: int, directions: Sequence[int],
                        old_object: np.ndarray, fixed: Set[int]) -> np.ndarray:
        """``mask`` without ``old_object`` on the slices a correction re-derives: in each
        direction up to the first fixed slice, hand-edited (locked) slices kept."""
        cleared = mask.copy()
        for direction in directions:
            for k in self._slices_towards(slice_index, direction, mask.shape[0]):
                if k in fixed:
                    break
                if k not in self.locked_slices:
                    cleared[k] &= ~old_object[k]
        return cleared

    def _local_addition(self, added: np.ndarray, target: np.ndarray, positive: Sequence[Point]) -> np.ndarray:
        """What a corrective positive click may add to ``target``: the new part within reach of
        the click. A click just outside the object's edge asks for that edge to move out a little
        (CORRECTION_REACH_MM); a click on a missed part farther away reaches in proportion to its
        distance from the object. (The reach was twice the object's equivalent radius: on a large
        bleed one click at its edge added a blob of brain as big as a third of it.)"""
        gap_px = ndi.distance_transform_edt(~target)
        floor_px = mm_to_px(CORRECTION_REACH_MM, self.predictor.spacing_zyx)
        reach = np.zeros_like(added)
        for x, y in positive:
            gap = float(gap_px[int(round(y)), int(round(x))])
            reach |= disc_around(added.shape, (x, y), max(floor_px, CORRECTION_REACH_GAPS * gap))
        return added & reach

    def set_slice_mask(self, slice_index: int, slice_mask: np.ndarray, lock: bool = True) -> None:
        """A hand edit of one slice (e.g. from the Segment Editor); locked by default."""
        slice_index = self._slice(slice_index)
        if slice_mask.shape != self.predictor.slice_shape:
            raise ValueError(f"Slice mask shape {slice_mask.shape} != slice shape {self.predictor.slice_shape}.")
        new_mask = self.mask.copy()
        new_mask[slice_index] = slice_mask.astype(bool)
        locked = set(self.locked_slices) | ({slice_index} if lock else set())
        self._commit(new_mask, locked, f"hand edit of slice {slice_index}")

    def set_locked(self, slice_index: int, locked: bool) -> None:
        """Lock (never overwrite) or unlock one slice, as one undoable step."""
        slice_index = self._slice(slice_index)
        new_locked = set(self.locked_slices)
        (new_locked.add if locked else new_locked.discard)(slice_index)
        self._commit(self.mask, new_locked, f"{'lock' if locked else 'unlock'} slice {slice_index}")

    def repropagate(self, slice_index: int, directions: Sequence[int] = (1, -1),
                    progress: Optional[ProgressCallback] = None,
                    cancel: Optional[threading.Event] = None, until_unchanged: bool = True) -> SegmentOutcome:
        """Re-run propagation from slice ``slice_index``'s current mask (locked slices kept; a
        direction ends at a slice the user clicked, which keeps its mask).

        ``until_unchanged``: stop in each direction once a slice comes out as it was before."""
        slice_index = self._slice(slice_index)
        seed = self.mask[slice_index]
        if not seed.any():
            raise ValueError(f"Slice {slice_index} has no mask to propagate from.")
        # Recompute the 3D object grown from this slice (not other bleeds), except locked and clicked slices.
        grown = self._object_through(slice_index, seed)
        fixed = set(self.slice_clicks) - {slice_index}
        cleared = self._cleared_beyond(self.mask, slice_index, directions, grown, fixed)
        try:
            outcome = self.propagator.propagate(slice_index, seed, directions, self.locked_slices | {slice_index},
                                                base_mask=cleared, progress=progress, cancel=cancel,
                                                until_unchanged=grown if until_unchanged else None,
                                                stop_slices=fixed)
        except PropagationCancelled as cancelled:
            outcome = cancelled.partial
        self.slice_iou.update(outcome.slice_iou)
        self.last_stop_reasons = outcome.stop_reasons
        self._commit(outcome.mask, self.locked_slices, f"re-propagation from slice {slice_index}")
        return outcome

    # -- undo / redo ----------------------------------------------------------------------------
    def _commit(self, new_mask: np.ndarray, new_locked: Set[int], label: str,
                new_clicks: Optional[ClickHistory] = None) -> None:
        if self.protected is not None:
            new_mask = new_mask & ~self.protected
        clicks = self.slice_clicks if new_clicks is None else new_clicks
        diff = _diff(self.mask, new_mask, self.locked_slices, set(new_locked), self.slice_clicks, clicks, label)
        if diff is None:
            return
        self.mask[diff.extent] = diff.after
        self.locked_slices = set(new_locked)
        self.slice_clicks = dict(clicks)
        self._undo.append(diff)
        del self._undo[:-UNDO_DEPTH]
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def last_edit(self) -> Optional[MaskDiff]:
        """The edit :meth:`undo` would revert (None when there is none): callers that attach state
        to an edit (e.g. voxels taken from other segments) look it up by identity."""
        return self._undo[-1] if self._undo else None

    @property
    def next_redo(self) -> Optional[MaskDiff]:
        """The edit :meth:`redo` would re-apply, or None."""
        return self._redo[-1] if self._redo else None

    @property
    def history_lengths(self) -> Tuple[int, int]:
        """(edits that can be undone, edits that can be redone): what an app shows by its buttons."""
        return len(self._undo), len(self._redo)

    def undo(self) -> str:
        """Revert the last edit exactly; returns its label."""
        if not self._undo:
            raise IndexError("Nothing to undo.")
        diff = self._undo.pop()
        self.mask[diff.extent] = diff.before
        self.locked_slices = set(diff.locked_before)
        self.slice_clicks = dict(diff.clicks_before)
        self._redo.append(diff)
        return diff.label

    def redo(self) -> str:
        """Re-apply the last undone edit exactly; returns its label."""
        if not self._redo:
            raise IndexError("Nothing to redo.")
        diff = self._redo.pop()
        self.mask[diff.extent] = diff.after
        self.locked_slices = set(diff.locked_after)
        self.slice_clicks = dict(diff.clicks_after)
        self._undo.append(diff)
        return diff.label
