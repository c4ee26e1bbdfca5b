"""Patient-level cross-validated 3D evaluation on whole head CTs: one click -> the 3D bleed,
then corrective clicks, as a user works in SAMIHS.

For each volume with bleed the first click goes on the largest slice of the largest 3D bleed
(the "clicked bleed"): its deepest interior point, or a random interior point seeded by the
volume's name. Up to five corrective clicks follow, each at the deepest point of the largest 3D
error (missed bleed: positive; false area that is no bleed: negative) on that error's largest
slice, applied by the method as the app applies a click (the session re-propagates from it).

Reported after 1, 3 and 5 clicks: 3D Dice against the clicked bleed and against all bleed,
volume (mL) against the clicked bleed's (signed, absolute) beside the bedside ABC/2 estimate of
the true bleed, HD95 (mm) against the clicked bleed, slices of the clicked bleed missed, slices
leaked (mask where there is no bleed), per subtype flag, and seconds per volume. The protocols,
click counts and per-fold choice of settings (on the other folds only, by clicked-bleed Dice
after the deepest first click: here in 3D) are those of the 2D table (:mod:`training.click_crossval`).
"""

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.interaction.measurements import measure_hemorrhage
from SAMIHSLib.imaging.preprocessing import denoise_slice
from SAMIHSLib.interaction.prompts import Point
from SAMIHSLib.interaction.regions import NEGATIVE_REACH_MM, mm_to_px, remove_nearest_to_negatives, slice_with_most
from SAMIHSLib.metrics import dice, hd95_mm, volume_ml

from .click_crossval import (PROTOCOLS, REPORTED_CLICKS, SELECTION, first_click, pick_records, select_per_fold,
                             split_method_label)
from .datasets import Case
from .fold_predictors import FoldPredictors
from .folds import fold_of_scan
from .prompts import corrective_click_3d

# 3D neighbourhood of bleed components: slices are thick, so diagonal neighbours belong together.
COMPONENT_STRUCTURE = np.ones((3, 3, 3), bool)
# Volumes are whole head CTs; a volume click is (slice k, column, row) of the (k, j, i) array.
VolumeClick = Tuple[int, Point]


@dataclass
class EvalVolume:
    """One whole CT: HU and masks (k, j, i), its patient, fold and per-slice subtype flags."""

    name: str
    scan: str
    fold: int
    image_hu: np.ndarray
    truth: np.ndarray
    spacing_zyx: Tuple[float, float, float]
    slice_subtypes: Dict[int, Tuple[str, ...]]

    def stack(self):
        """The volume as the apps hold it (an ``AxialStack`` of an axis-aligned ``CTVolume``)."""
        from SAMIHSLib.io.volume_io import AxialStack, CTVolume

        return AxialStack.of(CTVolume(self.image_hu, tuple(self.spacing_zyx[::-1]), (0.0, 0.0, 0.0), np.eye(3),
                                      self.name))


@dataclass
class VolumeRecord:
    """One method's 3D answer on one volume after ``clicks`` clicks under one protocol."""

    method: str
    setting: str
    volume: str
    scan: str
    fold: int
    subtypes: str  # "+"-joined flags on the clicked bleed's slices ("" when none is flagged)
    protocol: str
    clicks: int
    dice_clicked: float
    dice_all: float
    volume_ml: float
    truth_clicked_ml: float
    truth_all_ml: float
    abc2_truth_ml: float
    hd95_clicked_mm: float
    slices_clicked: int
    slices_missed: int
    slices_leaked: int
    seconds: float
    encoded_slices: int
    message: str

    @property
    def volume_error_ml(self) -> float:
        """Segmented minus true volume of the clicked bleed (mL)."""
        return self.volume_ml - self.truth_clicked_ml


def evaluation_volumes(cases: Sequence[Case], folds: List[List[str]], with_bleed: bool = True) -> List[EvalVolume]:
    """The volumes of ``cases`` (more than one slice) with the fold of their patient; only those
    with bleed when ``with_bleed``."""
    fold_of = fold_of_scan(folds)
    return [EvalVolume(case.name.split(".")[0], case.patient, fold_of[case.patient], case.image_hu, case.mask,
                       case.spacing_zyx, dict(case.slice_subtypes or {}))
            for case in cases if case.image_hu.shape[0] > 1 and (case.mask.any() or not with_bleed)]


def bleeds_over_half_ml(truth: np.ndarray, spacing_zyx: Sequence[float]) -> List[np.ndarray]:
    """The 3D bleed components of a (k, j, i) mask larger than 0.5 mL: what "bleeds found" counts."""
    labels, count = ndi.label(truth, structure=COMPONENT_STRUCTURE)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:] * float(np.prod(spacing_zyx)) / 1000.0
    return [labels == number + 1 for number in range(count) if sizes[number] > 0.5]


def clicked_bleed(truth: np.ndarray) -> np.ndarray:
    """The largest 3D bleed component of a (k, j, i) mask: what the first click goes on."""
    labels, count = ndi.label(truth, structure=COMPONENT_STRUCTURE)
    if count == 0:
        raise ValueError("The volume has no bleed to click on.")
    return labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1


def first_volume_click(target: np.ndarray, protocol: str, seed_text: str) -> VolumeClick:
    """The first click on the clicked bleed ``target``: on its largest slice, the deepest
    interior point, or a random interior point seeded by ``seed_text``."""
    k = slice_with_most(target)
    return k, first_click(target[k], protocol, seed_text)


class VolumeSegmenter:
    """What the 3D evaluation drives: a fresh volume, then clicks; each returns the 3D mask and
    any message the method gave in words."""

    encoded_slices = 0

    def forget_encodings(self) -> None:
        """Drop any cached slice encodings, so that the next volume's seconds include encoding."""

    def start(self, image_hu: np.ndarray, spacing_zyx: Tuple[float, float, float]) -> None:
        raise NotImplementedError

    def click(self, k: int, positive: Sequence[Point], negative: Sequence[Point]) -> Tuple[np.ndarray, str]:
        raise NotImplementedError


class RegionGrowing3DSegmenter(VolumeSegmenter):
    """The classical floor in 3D: the 6-connected HU-band region (3x3 median per slice, in-plane
    opening of ``opening_px``) under each positive click; a negative click cuts its slice by
    nearest click and drops what no positive click still reaches."""

    def __init__(self, band_hu: Tuple[float, float], opening_px: int, seed_search_mm: float = 1.5) -> None:
        self.band_hu, self.opening_px, self.seed_search_mm = band_hu, opening_px, seed_search_mm

    def start(self, image_hu: np.ndarray, spacing_zyx: Tuple[float, float, float]) -> None:
        if getattr(self, "_labelled", None) is not image_hu:  # one labelling per volume, for every protocol
            self.labels = self._label_band(image_hu)
            self._labelled = image_hu
        self.search_px = mm_to_px(self.seed_search_mm, spacing_zyx)
        self.negative_reach_px = mm_to_px(NEGATIVE_REACH_MM, spacing_zyx)
        self.mask = np.zeros(image_hu.shape, bool)
        self.positive: List[VolumeClick] = []
        self.negative: List[VolumeClick] = []

    def _label_band(self, image_hu: np.ndarray) -> np.ndarray:
        in_band = np.zeros(image_hu.shape, bool)
        for k in range(image_hu.shape[0]):
            smoothed = denoise_slice(image_hu[k])
            in_band[k] = (smoothed >= self.band_hu[0]) & (smoothed <= self.band_hu[1])
            if self.opening_px:
                in_band[k] = ndi.binary_opening(in_band[k], ndi.generate_binary_structure(2, 1),
                                                iterations=self.opening_px)
        return ndi.label(in_band)[0]  # 6-connected

    def _label_near(self, k: int, point: Point) -> int:
        col, row = int(round(point[0])), int(round(point[1]))
        reach = int(np.floor(self.search_px))
        window = self.labels[k, max(0, row - reach):row + reach + 1, max(0, col - reach):col + reach + 1]
        rows, cols = np.nonzero(window)
        if rows.size == 0:
            return 0
        r0, c0 = max(0, row - reach), max(0, col - reach)
        nearest = int(np.argmin((rows + r0 - row) ** 2 + (cols + c0 - col) ** 2))
        return int(window[rows[nearest], cols[nearest]])

    def click(self, k: int, positive: Sequence[Point], negative: Sequence[Point]) -> Tuple[np.ndarray, str]:
        self.positive += [(k, p) for p in positive]
        self.negative += [(k, p) for p in negative]
        for point in positive:
            label = self._label_near(k, point)
            if label:
                self.mask |= self.labels == label
        if negative:
            on_slice = [p for kk, p in self.positive if kk == k]
            self.mask[k] = remove_nearest_to_negatives(self.mask[k], on_slice, [p for kk, p in self.negative if kk == k],
                                                       self.negative_reach_px)
            labels, _ = ndi.label(self.mask)
            kept = {int(labels[kk, int(round(p[1])), int(round(p[0]))]) for kk, p in self.positive}
            self.mask = np.isin(labels, sorted(kept - {0}))
        found = "" if self.mask.any() else "no in-band region at the click"
        return self.mask.copy(), found


class SessionVolumeSegmenter(VolumeSegmenter):
    """A model through :class:`HemorrhageSession`, clicks applied and propagated as in the app."""

    def __init__(self, predictor, session_factory: Callable) -> None:
        self.predictor, self.session_factory = predictor, session_factory

    def start(self, image_hu: np.ndarray, spacing_zyx: Tuple[float, float, float]) -> None:
        self.predictor.set_volume(image_hu, spacing_zyx)
        self.session = self.session_factory(self.predictor)
        self._calls_at_start = self._encoder_calls()

    def _encoder_calls(self) -> int:
        return sum(asked.encoder_calls for asked in self.predictor.asked())

    def forget_encodings(self) -> None:
        self.predictor.cache.clear()  # the second opinion's too: they share it

    @property
    def encoded_slices(self) -> int:  # type: ignore[override]
        return self._encoder_calls() - self._calls_at_start

    def click(self, k: int, positive: Sequence[Point], negative: Sequence[Point]) -> Tuple[np.ndarray, str]:
        outcome = self.session.click(k, positive, negative)
        return self.session.mask.copy(), outcome.message


def _record(method: str, setting: str, item: EvalVolume, protocol: str, clicks: int, mask: np.ndarray,
            target: np.ndarray, seconds: float, encoded: int, message: str) -> VolumeRecord:
    spacing = item.spacing_zyx
    target_slices = np.nonzero(target.any(axis=(1, 2)))[0]
    hit = (mask & target).any(axis=(1, 2))
    leaked = mask.any(axis=(1, 2)) & ~item.truth.any(axis=(1, 2))
    flags = sorted({name for k in target_slices for name in item.slice_subtypes.get(int(k), ())})
    return VolumeRecord(method, setting, item.name, item.scan, item.fold, "+".join(flags), protocol, clicks,
                        dice(mask, target), dice(mask, item.truth), volume_ml(mask, spacing),
                        volume_ml(target, spacing), volume_ml(item.truth, spacing),
                        measure_hemorrhage(target, spacing).abc_over_2_ml, hd95_mm(mask, target, spacing),
                        int(target_slices.size), int((~hit[target_slices]).sum()), int(leaked.sum()),
                        seconds, encoded, message)


def simulate_volume(segmenter: VolumeSegmenter, item: EvalVolume, protocol: str, method: str, setting: str,
                    max_clicks: int = max(REPORTED_CLICKS)) -> List[VolumeRecord]:
    """Records after each reported click count for one volume, protocol and method; ``seconds``
    counts from the first click (encoding included, model load excluded)."""
    target = clicked_bleed(item.truth)
    k, point = first_volume_click(target, protocol, item.name)
    started = time.perf_counter()
    segmenter.start(item.image_hu, item.spacing_zyx)
    mask, message = segmenter.click(k, [point], [])
    records = []
    for count in range(1, max_clicks + 1):
        if count > 1:
            correction = corrective_click_3d(mask, item.truth)
            if correction is not None:  # no error left: later counts keep this mask
                (ck, cpoint), positive = correction
                mask, message = segmenter.click(ck, [cpoint] if positive else [], [] if positive else [cpoint])
        if count in REPORTED_CLICKS:
            records.append(_record(method, setting, item, protocol, count, mask, target,
                                   time.perf_counter() - started, segmenter.encoded_slices, message))
    return records


SettingFactory = Callable[[int], VolumeSegmenter]


def run_volume_method(method: str, settings: Dict[str, SettingFactory], volumes: Sequence[EvalVolume], folds: int,
                      protocols: Sequence[str] = PROTOCOLS, progress: Optional[Callable[[str], None]] = None
                      ) -> Tuple[List[VolumeRecord], List[VolumeRecord], List[str]]:
    """One method on every volume, its setting chosen per fold on the other folds.

    With several settings, each first answers the deepest first click on every volume (what a
    setting is chosen on), and per fold the setting best on the other folds is chosen; then the
    chosen setting runs the whole protocol (both first clicks, corrections) on the fold's volumes,
    from a cold embedding cache so that its seconds include the encoding. Returns (the chosen
    settings' records, the selection records, the setting chosen per fold)."""
    ordered = sorted(volumes, key=lambda v: (v.fold, v.name))
    selection: List[VolumeRecord] = []
    names = list(settings)
    if len(names) > 1:
        for item in ordered:
            for setting in names:
                selection.extend(simulate_volume(_segmenter(settings, setting, item.fold), item, SELECTION[0],
                                                 method, setting, max_clicks=SELECTION[1]))
            if progress is not None:
                progress(f"{method}: choosing on {item.name}")
        _, chosen_per_method = select_per_fold(selection, folds)
        chosen = chosen_per_method[method]
    else:
        chosen = names * folds
    records: List[VolumeRecord] = []
    for item in ordered:
        segmenter = _segmenter(settings, chosen[item.fold], item.fold)
        segmenter.forget_encodings()
        for protocol in protocols:
            records.extend(simulate_volume(segmenter, item, protocol, method, chosen[item.fold]))
        if progress is not None:
            progress(f"{method} {item.name}")
    return records, selection, chosen


_SEGMENTERS: Dict[Tuple[int, str, int], VolumeSegmenter] = {}


def _segmenter(settings: Dict[str, SettingFactory], setting: str, fold: int) -> VolumeSegmenter:
    """One segmenter per (settings, setting, fold), kept while that fold's volumes run."""
    key = (id(settings), setting, fold)
    if key not in _SEGMENTERS:
        for old in [k for k in _SEGMENTERS if k[2] != fold]:
            del _SEGMENTERS[old]
        _SEGMENTERS[key] = settings[setting](fold)
    return _SEGMENTERS[key]


def summarize_volumes(records: Sequence[VolumeRecord]) -> Dict[str, float]:
    """Means (and the median absolute volume error) over the records' volumes."""
    if not records:
        return {"volumes": 0}
    errors = np.array([r.volume_error_ml for r in records])
    abc_errors = np.array([r.abc2_truth_ml - r.truth_clicked_ml for r in records])
    finite = [r.hd95_clicked_mm for r in records if np.isfinite(r.hd95_clicked_mm)]
    return {"volumes": len(records),
            "dice_clicked": float(np.mean([r.dice_clicked for r in records])),
            "dice_all": float(np.mean([r.dice_all for r in records])),
            "volume_error_ml": float(np.mean(errors)),
            "abs_volume_error_ml": float(np.mean(np.abs(errors))),
            "median_abs_volume_error_ml": float(np.median(np.abs(errors))),
            "abc2_abs_error_ml": float(np.mean(np.abs(abc_errors))),
            "abc2_median_abs_error_ml": float(np.median(np.abs(abc_errors))),
            "hd95_clicked_mm": float(np.mean(finite)) if finite else float("inf"),
            "hd95_infinite": len(records) - len(finite),
            "slices_missed": int(sum(r.slices_missed for r in records)),
            "slices_clicked": int(sum(r.slices_clicked for r in records)),
            "slices_leaked": int(sum(r.slices_leaked for r in records)),
            "seconds": float(np.mean([r.seconds for r in records])),
            "empty": int(sum(r.volume_ml == 0 for r in records))}


def volume_tables(records: Sequence[VolumeRecord], methods: Sequence[str], caption: str) -> str:
    """The Markdown report: the 1-click table, the corrective-click curve, per subtype flag."""
    lines = [caption, "",
             "| method | 3D Dice clicked bleed | 3D Dice all bleed | volume error mL (signed / abs. mean / abs. "
             "median) | ABC/2 of the true bleed, abs. error mL (mean / median) | HD95 clicked (mm) | "
             "slices of the clicked bleed missed | slices leaked | seconds per volume | random click: Dice clicked |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for method in methods:
        one = summarize_volumes(pick_records(records, method=method, protocol="deepest", clicks=1))
        rand = summarize_volumes(pick_records(records, method=method, protocol="random", clicks=1))
        if not one["volumes"]:
            continue
        lines.append(f"| {method} | {one['dice_clicked']:.3f} | {one['dice_all']:.3f} | "
                     f"{one['volume_error_ml']:+.1f} / {one['abs_volume_error_ml']:.1f} / "
                     f"{one['median_abs_volume_error_ml']:.1f} | {one['abc2_abs_error_ml']:.1f} / "
                     f"{one['abc2_median_abs_error_ml']:.1f} | {one['hd95_clicked_mm']:.1f} "
                     f"({one['hd95_infinite']} empty) | {one['slices_missed']} of {one['slices_clicked']} | "
                     f"{one['slices_leaked']} | {one['seconds']:.1f} | "
                     f"{rand.get('dice_clicked', float('nan')):.3f} |")
    lines += ["", "After corrective clicks (deepest first click; each correction at the largest 3D error):", "",
              "| method | clicks | 3D Dice clicked | 3D Dice all | abs. volume error mL (mean / median) | "
              "slices missed | slices leaked |", "|---|---|---|---|---|---|---|"]
    for method in methods:
        for count in REPORTED_CLICKS:
            s = summarize_volumes(pick_records(records, method=method, protocol="deepest", clicks=count))
            if s["volumes"]:
                lines.append(f"| {method} | {count} | {s['dice_clicked']:.3f} | {s['dice_all']:.3f} | "
                             f"{s['abs_volume_error_ml']:.1f} / {s['median_abs_volume_error_ml']:.1f} | "
                             f"{s['slices_missed']} | {s['slices_leaked']} |")
    flags = sorted({flag for r in records for flag in r.subtypes.split("+") if flag})
    lines += ["", "Per subtype flag on the clicked bleed's slices (a volume counts under each of its flags; "
                  "3D Dice clicked bleed, 1 click / 3 clicks; all bleed after 3 clicks):", "",
              "| subtype | volumes | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for flag in flags:
        cells, count = [], 0
        for method in methods:
            def flagged(clicks: int) -> List[VolumeRecord]:
                return [r for r in pick_records(records, method=method, protocol="deepest", clicks=clicks)
                        if flag in r.subtypes.split("+")]
            one, three = summarize_volumes(flagged(1)), summarize_volumes(flagged(3))
            count = max(count, one["volumes"])
            cells.append(f"{one.get('dice_clicked', float('nan')):.3f} / {three.get('dice_clicked', float('nan')):.3f}"
                         f" (all {three.get('dice_all', float('nan')):.3f})")
        lines.append(f"| {flag} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def selection_table(selection: Sequence[VolumeRecord]) -> str:
    """Every setting tried, over all volumes (the deepest first click): what the choice saw."""
    lines = ["| method | setting | volumes | 3D Dice clicked, 1 click | abs. volume error mL (median) | "
             "slices missed | slices leaked |", "|---|---|---|---|---|---|---|"]
    for method, setting in dict.fromkeys((r.method, r.setting) for r in selection):
        s = summarize_volumes(pick_records(selection, method=method, setting=setting))
        lines.append(f"| {method} | {setting} | {s['volumes']} | {s['dice_clicked']:.3f} | "
                     f"{s['median_abs_volume_error_ml']:.1f} | {s['slices_missed']} of {s['slices_clicked']} | "
                     f"{s['slices_leaked']} |")
    return "\n".join(lines) + "\n"


def per_volume_table(records: Sequence[VolumeRecord], method: str) -> str:
    """One line per volume for ``method`` (deepest click, 1 and 3 clicks): where it fails."""
    lines = ["| volume | fold | subtypes | true mL | 1 click: Dice clicked, mL, missed/leaked slices | "
             "3 clicks: Dice all | message |", "|---|---|---|---|---|---|---|"]
    one = {r.volume: r for r in pick_records(records, method=method, protocol="deepest", clicks=1)}
    three = {r.volume: r for r in pick_records(records, method=method, protocol="deepest", clicks=3)}
    for name in sorted(one):
        r, t = one[name], three.get(name)
        lines.append(f"| {name} | {r.fold} | {r.subtypes} | {r.truth_clicked_ml:.1f} | {r.dice_clicked:.3f}, "
                     f"{r.volume_ml:.1f}, {r.slices_missed}/{r.slices_leaked} | "
                     f"{t.dice_all if t else float('nan'):.3f} | {r.message[:80]} |")
    return "\n".join(lines) + "\n"


# The floor's (HU band, in-plane opening in pixels) settings, chosen per fold like everything else
# (fewer than in 2D: every 3D setting costs a pass over whole CTs).
REGION_GROWING_3D_SETTINGS: Tuple[Tuple[Tuple[float, float], int], ...] = (
    ((40.0, 100.0), 0), ((45.0, 90.0), 0), ((45.0, 90.0), 1), ((50.0, 90.0), 1))


def volume_method_settings(spec: str, engine: str = "torch", fold_detectors: Optional[str] = None
                           ) -> Tuple[str, Dict[str, SettingFactory]]:
    """A method named on the command line -> (its name in the tables, its settings).

    ``region``: 3D HU region growing (the floor); ``lite-base`` / ``lite`` / a checkpoint path:
    the model through the session with the app's click handling and propagation.
    ``SPEC:propagation=NAME,NAME``: candidate propagation settings (:data:`PROPAGATION_CANDIDATES`),
    chosen per fold on the training folds; ``SPEC:click=NAME,NAME`` the same for click settings
    (:data:`~training.click_candidates.CLICK_CANDIDATES`); ``SPEC:detector=NAME,NAME`` for joining the
    bleed detector's regions (:data:`DETECTOR_JOIN_CANDIDATES`), each fold's detector read from
    ``fold_detectors`` (a path with ``{fold}``). A click-trained LiteMedSAM gets lite-base as its second
    opinion, as in the app (``SPEC:no-second-opinion``: without). ``LABEL=SPEC`` names the method in the tables.
    """
    label, named_spec = split_method_label(spec)
    if label:
        return label, volume_method_settings(named_spec, engine, fold_detectors)[1]
    if spec == "region":
        return "3D HU region growing (floor)", {
            f"{band[0]:.0f}-{band[1]:.0f} HU, opening {opening} px":
                (lambda fold, band=band, opening=opening: RegionGrowing3DSegmenter(band, opening))
            for band, opening in REGION_GROWING_3D_SETTINGS}
    from SAMIHSLib.interaction.session import HemorrhageSession

    from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig
    from SAMIHSLib.interaction.detected_regions import DetectorJoin, DetectorRegions
    from SAMIHSLib.interaction.propagation import PropagationConfig

    from .click_candidates import click_candidates
    from .propagation_candidates import DETECTOR_JOIN_CANDIDATES, PROPAGATION_CANDIDATES

    base, _, options = spec.partition(":")
    # (click setting, propagation setting, detector join) by the name the tables give it
    settings = {"as shipped": (ClickSegmentationConfig(), PROPAGATION_CANDIDATES["as shipped"], None)}
    second_opinion = options != "no-second-opinion"
    if options and second_opinion:
        key, _, values = options.partition("=")
        if key not in ("propagation", "click", "detector") or not values:
            raise ValueError(f"Unknown method option {options!r} in {spec!r}; use ':propagation=NAME,NAME', "
                             "':click=NAME,NAME', ':detector=NAME,NAME' or ':no-second-opinion'.")
        if key == "click":
            settings = {name: (config, PropagationConfig(), None) for name, config in click_candidates(values).items()}
        else:
            candidates = PROPAGATION_CANDIDATES if key == "propagation" else DETECTOR_JOIN_CANDIDATES
            names = values.split(",")
            unknown = [n for n in names if n not in candidates]
            if unknown:
                raise ValueError(f"Unknown {key} setting(s) {unknown}; use {sorted(candidates)}.")
            if key == "propagation":
                settings = {name: (ClickSegmentationConfig(), candidates[name], None) for name in names}
            else:
                if not fold_detectors or "{fold}" not in fold_detectors:
                    raise ValueError("Joining the detector's regions needs each fold's detector: "
                                     "--fold-detectors PATH with {fold} in it.")
                settings = {name: (ClickSegmentationConfig(), PropagationConfig(), candidates[name]) for name in names}
    label = {"lite-base": "lite-base (default)", "lite": "shipped lite", "samihs": "shipped samihs"}.get(base, base)
    predictors = FoldPredictors(base, engine, second_opinion=second_opinion)

    def factory(fold: int, click: ClickSegmentationConfig, propagation: PropagationConfig,
                join: Optional[DetectorJoin]) -> VolumeSegmenter:
        def session(predictor) -> HemorrhageSession:
            regions = None
            if join is not None:
                from SAMIHSLib.volume.bleed_detection import DetectorEvidence

                evidence = DetectorEvidence(_fold_detector(str(fold_detectors), fold), predictor.volume_hu,
                                            predictor.spacing_zyx)
                regions = DetectorRegions(evidence, join)
            return HemorrhageSession(predictor, click, propagation, regions)

        return SessionVolumeSegmenter(predictors.for_fold(fold), session)

    return label, {name: (lambda fold, configs=configs: factory(fold, *configs)) for name, configs in settings.items()}


_DETECTORS: Dict[str, object] = {}


def _fold_detector(path_pattern: str, fold: int):
    """Fold ``fold``'s bleed detector (kept: a few MB each)."""
    from SAMIHSLib.volume.bleed_detection import BleedDetector

    path = path_pattern.replace("{fold}", str(fold))
    if path not in _DETECTORS:
        _DETECTORS[path] = BleedDetector.load(path)
    return _DETECTORS[path]


@dataclass
class AutoRecord:
    """``samihs batch --prompts auto`` on one volume: what it found against the truth."""

    volume: str
    scan: str
    fold: int
    has_bleed: bool
    seeds: int
    found_ml: float
    truth_ml: float
    dice_all: float
    bleeds_over_half_ml: int  # true 3D bleeds larger than 0.5 mL
    bleeds_found: int  # of those, how many the result touches
    seconds: float
    status: str  # "no bleed found" or "segmented"


def run_auto_batch(volumes: Sequence[EvalVolume], predictor,
                   progress: Optional[Callable[[str], None]] = None) -> List[AutoRecord]:
    """The batch's automatic mode (seeds from :mod:`SAMIHSLib.interaction.auto_seeds`, each
    clicked and propagated by the batch's own ``segment_volume``) on every volume, bleed-free
    ones included: a bleed-free head is a result (mL found where there is nothing)."""
    from SAMIHSLib.volume.segmentation import VolumePrompts, auto_seed_clicks, segment_volume

    records = []
    for item in sorted(volumes, key=lambda v: (v.fold, v.name)):
        stack = item.stack()
        started = time.perf_counter()
        predictor.cache.clear()
        seeds = auto_seed_clicks(stack)
        mask = segment_volume(predictor, stack, VolumePrompts(positive=seeds)) if seeds else \
            np.zeros(item.truth.shape, bool)
        seconds = time.perf_counter() - started
        large = bleeds_over_half_ml(item.truth, item.spacing_zyx)
        found = sum(bool((mask & bleed).any()) for bleed in large)
        records.append(AutoRecord(item.name, item.scan, item.fold, bool(item.truth.any()), len(seeds),
                                  volume_ml(mask, item.spacing_zyx), volume_ml(item.truth, item.spacing_zyx),
                                  dice(mask, item.truth), len(large), found, seconds,
                                  "segmented" if mask.any() else "no bleed found"))
        if progress is not None:
            progress(f"auto {item.name}")
    return records


def auto_table(records: Sequence[AutoRecord], caption: str) -> str:
    """Bleed volumes (all-bleed Dice, mL, bleeds > 0.5 mL found) and bleed-free heads (mL found)."""
    bleed = [r for r in records if r.has_bleed]
    free = [r for r in records if not r.has_bleed]
    found = sum(r.bleeds_found for r in bleed)
    total = sum(r.bleeds_over_half_ml for r in bleed)
    lines = [caption, "",
             "| volumes | all-bleed 3D Dice (mean) | abs. volume error mL (mean / median) | bleeds > 0.5 mL found | "
             "mL found in bleed-free heads (mean / max; heads over 2 mL) | seconds per volume |",
             "|---|---|---|---|---|---|"]
    errors = np.abs([r.found_ml - r.truth_ml for r in bleed]) if bleed else np.array([np.nan])
    free_ml = np.array([r.found_ml for r in free]) if free else np.array([np.nan])
    lines.append(f"| {len(bleed)} with bleed, {len(free)} without | "
                 f"{np.mean([r.dice_all for r in bleed]) if bleed else float('nan'):.3f} | "
                 f"{np.mean(errors):.1f} / {np.median(errors):.1f} | {found} of {total} | "
                 f"{np.mean(free_ml):.1f} / {np.max(free_ml):.1f}; {int(np.sum(free_ml > 2.0))} | "
                 f"{np.mean([r.seconds for r in records]):.1f} |")
    return "\n".join(lines) + "\n"
