"""How far propagation can carry one click: a click on every slice of the clicked bleed.

Each slice of the clicked 3D bleed (the 3D evaluation's, :func:`training.volume_eval.clicked_bleed`)
is segmented on its own from one click at the deepest point of the bleed there, by a 2D method of
the click table (:func:`training.click_crossval.method_settings`: no propagation, no neighbours);
the slices together are scored in 3D against the clicked bleed. One click + propagation equals
this only where it answers every slice as well as a click there would; it can pass it where the
previous slice's mask prompts a slice better than a click does. Settings (the floor's HU band)
are chosen per fold on the other folds, as in both tables.

With ``truth_box`` a model gets, instead of the click, the box of the true bleed on each slice
(the click handling's margin): what the model itself can answer with a perfect box, whatever
the click handling and propagation do.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig
from SAMIHSLib.interaction.regions import box_around, deepest_point, mm_to_whole_px
from SAMIHSLib.metrics import dice

from .click_crossval import SELECTION, SessionSegmenter, SettingFactory, SliceSegmenter, select_per_fold
from .volume_eval import EvalVolume, clicked_bleed


@dataclass
class CeilingRecord:
    """One method's every-slice answer on one volume (``protocol`` and ``clicks`` name the per-fold
    choice's key, as in the click tables)."""

    method: str
    setting: str
    volume: str
    scan: str
    fold: int
    protocol: str
    clicks: int
    dice_clicked: float
    slices_clicked: int
    slice_dice: str  # "k:dice" per clicked slice, space-separated


def every_slice_mask(segmenter: SliceSegmenter, item: EvalVolume, target: np.ndarray,
                     truth_box: bool = False) -> Tuple[np.ndarray, Dict[int, float]]:
    """The clicked bleed ``target`` of ``item`` (:func:`clicked_bleed`) as ``segmenter`` answers
    one deepest click (or, with ``truth_box``, the true bleed's box) on each of its slices, alone;
    and each slice's 2D Dice."""
    if truth_box and not isinstance(segmenter, SessionSegmenter):
        raise ValueError("Only a model takes the true bleed's box; HU region growing takes clicks.")
    mask = np.zeros_like(target)
    per_slice: Dict[int, float] = {}
    margin = mm_to_whole_px(ClickSegmentationConfig().box_margin_mm, item.spacing_zyx)
    for k in np.nonzero(target.any(axis=(1, 2)))[0]:
        segmenter.start(item.image_hu[k], item.spacing_zyx)
        if truth_box:
            segmenter.session.click(0, [], [], box=box_around(target[k], margin), propagate=False)
            mask[k] = segmenter.session.mask[0]
        else:
            mask[k], _, _ = segmenter.click([deepest_point(target[k])], [])
        per_slice[int(k)] = dice(mask[k], target[k])
    return mask, per_slice


def run_ceiling(method: str, settings: Dict[str, SettingFactory], volumes: Sequence[EvalVolume], folds: int,
                progress: Optional[Callable[[str], None]] = None,
                truth_box: bool = False) -> Tuple[List[CeilingRecord], List[CeilingRecord]]:
    """Every setting of ``method`` on every volume (:func:`every_slice_mask`); returns (the records
    of the setting chosen per fold on the other folds, every record)."""
    protocol, clicks = SELECTION
    targets = {item.name: clicked_bleed(item.truth) for item in volumes}  # one 3D labelling per volume
    everything: List[CeilingRecord] = []
    for setting, factory in settings.items():
        segmenters: Dict[int, SliceSegmenter] = {}
        for item in sorted(volumes, key=lambda v: v.fold):  # one per-fold model loaded at a time
            if item.fold not in segmenters:
                segmenters = {item.fold: factory(item.fold)}
            mask, per_slice = every_slice_mask(segmenters[item.fold], item, targets[item.name], truth_box)
            everything.append(CeilingRecord(method, setting, item.name, item.scan, item.fold, protocol, clicks,
                                            dice(mask, targets[item.name]), len(per_slice),
                                            " ".join(f"{k}:{d:.3f}" for k, d in per_slice.items())))
            if progress is not None:
                progress(f"{method} [{setting}] {item.name}")
    chosen, _ = select_per_fold(everything, folds)
    return chosen, everything


def ceiling_table(records: Sequence[CeilingRecord], caption: str) -> str:
    """Mean 3D Dice per method, then per volume."""
    methods = list(dict.fromkeys(r.method for r in records))
    lines = [caption, "", "| method | volumes | 3D Dice clicked bleed, every slice prompted alone (mean) |",
             "|---|---|---|"]
    for method in methods:
        mine = [r.dice_clicked for r in records if r.method == method]
        lines.append(f"| {method} | {len(mine)} | {np.mean(mine):.3f} |")
    lines += ["", "| volume | fold | slices | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    by_volume = {(r.volume, r.method): r for r in records}
    for volume in sorted(dict.fromkeys(r.volume for r in records)):
        first = next(r for r in records if r.volume == volume)
        cells = [f"{by_volume[(volume, m)].dice_clicked:.3f}" if (volume, m) in by_volume else "-" for m in methods]
        lines.append(f"| {volume} | {first.fold} | {first.slices_clicked} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
