"""Scan-level cross-validated click evaluation on real CT slices: where every 2D accuracy figure
(docs/accuracy-2d.md) comes from.

Each method answers simulated clicks as a user makes them in SAMIHS: a first click (the deepest
interior point of the largest bleed, or a seeded random interior point of it), then corrective
clicks at the deepest point of the largest error (positive on missed bleed of the clicked
component, negative on false area that is no bleed at all), applied by a session as in the app.
Reported after 1, 3 and 5 clicks: Dice against the clicked bleed (the ground-truth component
under the first click) and against all bleed on the slice, HD95 (mm) against the clicked bleed,
empty answers, per subtype and per dataset.

Methods with several settings (HU bands, openings, prompt handling) are tuned per fold on the
other folds' slices only (first click, deepest point, clicked-bleed Dice), so nothing is chosen
by looking at the slices it is tested on. A method may also name one checkpoint per fold
(``{fold}`` in its path): trained on that fold's training scans.
"""

import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig
from SAMIHSLib.metrics import dice, hd95_mm
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.imaging.preprocessing import PreprocessingConfig, denoise_slice
from SAMIHSLib.interaction.prompts import Point
from SAMIHSLib.interaction.regions import (NEGATIVE_REACH_MM, component_at, deepest_point, hyperdense_region, mm_to_px,
                               random_interior_point, remove_nearest_to_negatives)
from SAMIHSLib.interaction.session import HemorrhageSession

from .click_candidates import click_candidates
from .datasets import SUBTYPES, UNLABELLED_SUBTYPE, Case
from .fold_predictors import FoldPredictors
from .folds import fold_of_scan
from .prompts import corrective_click

PROTOCOLS = ("deepest", "random")
REPORTED_CLICKS = (1, 3, 5)
SELECTION = ("deepest", 1)  # the protocol and click count a setting is chosen on (training folds only)


@dataclass
class EvalSlice:
    """One real slice with hemorrhage: HU image and masks (rows, columns), its scan and fold."""

    name: str
    scan: str
    fold: int
    image_hu: np.ndarray
    truth: np.ndarray
    subtype_labels: Optional[np.ndarray]
    spacing_zyx: Tuple[float, float, float]

    @property
    def dataset(self) -> str:
        return self.scan.split("/")[0]


@dataclass
class ClickRecord:
    """One method's answer on one slice after ``clicks`` clicks under one protocol."""

    method: str
    setting: str
    slice: str
    scan: str
    dataset: str
    fold: int
    subtype: str
    protocol: str
    clicks: int
    dice_clicked: float
    dice_all: float
    hd95_clicked_mm: float
    empty: bool
    answered_by: str
    message: str


def evaluation_slices(cases: Sequence[Case], folds: List[List[str]]) -> List[EvalSlice]:
    """Every hemorrhage slice of ``cases`` with the fold of its scan."""
    fold_of = fold_of_scan(folds)
    slices = []
    for case in cases:
        for k in case.hemorrhage_slices():
            labels = None if case.subtype_labels is None else case.subtype_labels[k]
            name = case.name if case.image_hu.shape[0] == 1 else f"{case.name}#{k}"
            slices.append(EvalSlice(name, case.patient, fold_of[case.patient], case.image_hu[k], case.mask[k],
                                    labels, case.spacing_zyx))
    return slices


def first_click(truth: np.ndarray, protocol: str, seed_text: str) -> Point:
    """The first click: the deepest interior point of the largest bleed, or a random interior point
    of it seeded by ``seed_text`` (the slice name), so every method gets the same click."""
    if protocol == "deepest":
        return deepest_point(truth)
    if protocol == "random":
        return random_interior_point(truth, np.random.default_rng(zlib.crc32(seed_text.encode())))
    raise ValueError(f"Unknown click protocol {protocol!r}; use one of {PROTOCOLS}.")


def subtype_at(item: EvalSlice, click: Point) -> str:
    """The subtype of the clicked bleed, or "unlabelled" where the masks have no classes."""
    if item.subtype_labels is None:
        return UNLABELLED_SUBTYPE
    value = int(item.subtype_labels[int(round(click[1])), int(round(click[0]))])
    return SUBTYPES.get(value, UNLABELLED_SUBTYPE)


class SliceSegmenter:
    """What the evaluation drives: a fresh slice, then clicks; each click returns the current mask,
    what answered it and any message."""

    def start(self, image_hu: np.ndarray, spacing_zyx: Tuple[float, float, float]) -> None:
        raise NotImplementedError

    def click(self, positive: Sequence[Point], negative: Sequence[Point]) -> Tuple[np.ndarray, str, str]:
        raise NotImplementedError


class RegionGrowingSegmenter(SliceSegmenter):
    """The classical floor: the HU-band region connected to each positive click (on the 3x3-median
    slice, after an opening of ``opening_px``); negative clicks cut by nearest click, as the app."""

    def __init__(self, band_hu: Tuple[float, float], opening_px: int, seed_search_mm: float = 1.5) -> None:
        self.band_hu, self.opening_px, self.seed_search_mm = band_hu, opening_px, seed_search_mm

    def start(self, image_hu: np.ndarray, spacing_zyx: Tuple[float, float, float]) -> None:
        self.slice_hu = denoise_slice(image_hu)
        self.search_px = mm_to_px(self.seed_search_mm, spacing_zyx)
        self.negative_reach_px = mm_to_px(NEGATIVE_REACH_MM, spacing_zyx)
        self.mask = np.zeros(image_hu.shape, bool)
        self.positive: List[Point] = []
        self.negative: List[Point] = []

    def click(self, positive: Sequence[Point], negative: Sequence[Point]) -> Tuple[np.ndarray, str, str]:
        self.positive += list(positive)
        self.negative += list(negative)
        for point in positive:
            self.mask |= hyperdense_region(self.slice_hu, point, self.band_hu, self.opening_px, self.search_px)
        if negative:
            self.mask = remove_nearest_to_negatives(self.mask, self.positive, self.negative, self.negative_reach_px)
        return self.mask.copy(), "region growing", ""


class SessionSegmenter(SliceSegmenter):
    """A model through :class:`HemorrhageSession`, exactly as the app applies clicks."""

    def __init__(self, predictor: SAMIHSPredictor, config: ClickSegmentationConfig) -> None:
        self.predictor, self.config = predictor, config

    def start(self, image_hu: np.ndarray, spacing_zyx: Tuple[float, float, float]) -> None:
        self.predictor.set_volume(image_hu, spacing_zyx)
        self.session = HemorrhageSession(self.predictor, self.config)

    def click(self, positive: Sequence[Point], negative: Sequence[Point]) -> Tuple[np.ndarray, str, str]:
        outcome = self.session.click(0, positive, negative, propagate=False)
        return self.session.mask[0].copy(), outcome.slice_methods.get(0, ""), outcome.message


def simulate_clicks(segmenter: SliceSegmenter, item: EvalSlice, protocol: str, method: str, setting: str,
                    max_clicks: int = max(REPORTED_CLICKS)) -> List[ClickRecord]:
    """Records after each reported click count for one slice, protocol and method."""
    click = first_click(item.truth, protocol, item.name)
    target = component_at(item.truth, click)
    subtype = subtype_at(item, click)
    segmenter.start(item.image_hu, item.spacing_zyx)
    mask, answered_by, message = segmenter.click([click], [])
    records = []
    for count in range(1, max_clicks + 1):
        if count > 1:
            correction = corrective_click(mask, target, also_true=item.truth)
            if correction is not None:  # no error left: later counts keep this mask
                point, positive = correction
                mask, _, _ = segmenter.click([point] if positive else [], [] if positive else [point])
        if count in REPORTED_CLICKS:
            records.append(ClickRecord(method, setting, item.name, item.scan, item.dataset, item.fold, subtype,
                                       protocol, count, dice(mask, target), dice(mask, item.truth),
                                       hd95_mm(mask, target, item.spacing_zyx[1:]), not mask.any(), answered_by,
                                       message))
    return records


# A setting builds the segmenter for one fold (the fold matters only for per-fold checkpoints).
SettingFactory = Callable[[int], SliceSegmenter]


def run_method(method: str, settings: Dict[str, SettingFactory], slices: Sequence[EvalSlice],
               protocols: Sequence[str] = PROTOCOLS,
               progress: Optional[Callable[[str], None]] = None) -> List[ClickRecord]:
    """Every setting of one method on every slice and protocol (all folds)."""
    records: List[ClickRecord] = []
    for setting, factory in settings.items():
        segmenters: Dict[int, SliceSegmenter] = {}
        for item in sorted(slices, key=lambda s: s.fold):  # fold by fold: one per-fold model loaded at a time
            if item.fold not in segmenters:
                segmenters = {item.fold: factory(item.fold)}
            segmenter = segmenters[item.fold]
            for protocol in protocols:
                records.extend(simulate_clicks(segmenter, item, protocol, method, setting))
            if progress is not None:
                progress(f"{method} [{setting}] {item.name}")
    return records


def select_per_fold(records: Sequence[ClickRecord], folds: int) -> Tuple[List[ClickRecord], Dict[str, List[str]]]:
    """For each method and fold, the setting with the best mean clicked-bleed Dice on the *other*
    folds (first click, deepest point); returns that setting's records on the fold's own slices,
    and the chosen setting per fold for each method. Any record with these fields will do (the 3D
    evaluation's :class:`training.volume_eval.VolumeRecord` too)."""
    chosen_records: List[ClickRecord] = []
    chosen: Dict[str, List[str]] = {}
    protocol, count = SELECTION
    for method in dict.fromkeys(r.method for r in records):
        mine = [r for r in records if r.method == method]
        settings = list(dict.fromkeys(r.setting for r in mine))
        chosen[method] = []
        for fold in range(folds):
            def training_score(setting: str) -> float:
                scores = [r.dice_clicked for r in mine if r.setting == setting and r.fold != fold
                          and r.protocol == protocol and r.clicks == count]
                return float(np.mean(scores)) if scores else -1.0

            best = max(settings, key=training_score)  # ties: the first listed setting
            chosen[method].append(best)
            chosen_records.extend(r for r in mine if r.setting == best and r.fold == fold)
    return chosen_records, chosen


def summarize(records: Sequence[ClickRecord]) -> Dict[str, float]:
    """Means over the records' slices: Dice (clicked, all), HD95 where finite, empty count."""
    finite = [r.hd95_clicked_mm for r in records if np.isfinite(r.hd95_clicked_mm)]
    return {"slices": len(records),
            "dice_clicked": float(np.mean([r.dice_clicked for r in records])) if records else float("nan"),
            "dice_all": float(np.mean([r.dice_all for r in records])) if records else float("nan"),
            "hd95_clicked_mm": float(np.mean(finite)) if finite else float("inf"),
            "empty": int(sum(r.empty for r in records)),
            "fallback_answers": int(sum(bool(r.message) and not r.empty for r in records))}


def pick_records(records: Sequence[ClickRecord], **where) -> List[ClickRecord]:
    """The records whose fields equal ``where`` (any record type with those fields)."""
    return [r for r in records if all(getattr(r, key) == value for key, value in where.items())]


def results_tables(records: Sequence[ClickRecord], methods: Sequence[str], caption: str) -> str:
    """The Markdown report: the main table, the corrective-click curve, per subtype, per dataset."""
    lines = [caption, "",
             "| method | Dice clicked bleed, 1 click | 3 clicks | 5 clicks | Dice all bleed, 1 click | "
             "HD95 clicked (mm), 1 click | empty answers, 1 click | fallback answers, 1 click | "
             "random interior click: Dice clicked, 1 / 3 clicks |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method in methods:
        deep = {c: summarize(pick_records(records, method=method, protocol="deepest", clicks=c)) for c in REPORTED_CLICKS}
        rand = {c: summarize(pick_records(records, method=method, protocol="random", clicks=c)) for c in (1, 3)}
        one = deep[1]
        lines.append(f"| {method} | {one['dice_clicked']:.3f} | {deep[3]['dice_clicked']:.3f} | "
                     f"{deep[5]['dice_clicked']:.3f} | {one['dice_all']:.3f} | {one['hd95_clicked_mm']:.1f} | "
                     f"{one['empty']} of {one['slices']} | {one['fallback_answers']} | "
                     f"{rand[1]['dice_clicked']:.3f} / {rand[3]['dice_clicked']:.3f} |")
    subtypes = sorted({r.subtype for r in records}, key=lambda s: (s == UNLABELLED_SUBTYPE, s))
    for title, key, values in (("Per subtype of the clicked bleed", "subtype", subtypes),
                               ("Per dataset", "dataset", sorted({r.dataset for r in records}))):
        lines += ["", f"{title} (Dice clicked bleed, deepest click; 1 click / 3 clicks):", "",
                  "| " + key + " | slices | " + " | ".join(methods) + " |",
                  "|---|---|" + "---|" * len(methods)]
        for value in values:
            cells = []
            for method in methods:
                one = summarize(pick_records(records, method=method, protocol="deepest", clicks=1, **{key: value}))
                three = summarize(pick_records(records, method=method, protocol="deepest", clicks=3, **{key: value}))
                cells.append(f"{one['dice_clicked']:.3f} / {three['dice_clicked']:.3f}")
            count = len(pick_records(records, method=methods[0], protocol="deepest", clicks=1, **{key: value}))
            lines.append(f"| {value} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# The classical floor's settings: (HU band, opening in pixels), tuned per fold like everything else.
REGION_GROWING_SETTINGS: Tuple[Tuple[Tuple[float, float], int], ...] = tuple(
    (band, opening) for band in ((40.0, 100.0), (45.0, 100.0), (45.0, 90.0), (50.0, 100.0)) for opening in (0, 1, 2))


def parse_window(text: str) -> Tuple[float, float]:
    """"LEVEL/WIDTH" in HU -> (level, width); a clear error for anything else."""
    try:
        level, width = (float(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"A CT window is LEVEL/WIDTH in HU, e.g. 40/80; got {text!r}.") from None
    if width <= 0:
        raise ValueError(f"A CT window's width must be > 0 HU; got {text!r}.")
    return level, width


def split_method_label(spec: str) -> Tuple[str, str]:
    """``LABEL=SPEC`` -> (LABEL, SPEC); a spec without a label -> ("", spec). The first "=" names
    the method unless a ":" comes before it (there it belongs to an option, ``SPEC:KEY=VALUES``)."""
    label, named, rest = spec.partition("=")
    return (label, rest) if named and ":" not in label else ("", spec)


def method_settings(spec: str, engine: str = "torch") -> Tuple[str, Dict[str, SettingFactory]]:
    """A method named on the command line -> (its name in the tables, its settings).

    ``region``: HU region growing (the floor); ``lite-base``: LiteMedSAM as released with the
    intensity-guided click handling; ``lite``: the shipped model as the app runs it; ``lite:alone``:
    the same without the missed-click fallbacks (what the model alone gives); ``lite:guided``: the
    shipped model given the intensity-guided region boxes with its clicks; ``PATH`` or
    ``PATH{fold}``: a checkpoint, one per fold when ``{fold}`` is in the path, as the app runs it (a
    click-trained LiteMedSAM with lite-base as its second opinion; ``:no-second-opinion``: without;
    ``:click=NAME,NAME``: candidate click settings of :data:`~training.click_candidates.CLICK_CANDIDATES`,
    chosen per fold on the training folds).
    ``NAME=SPEC``: SPEC shown as NAME. ``SPEC@L/W,L/W...``: the model fed CT windows of level L and
    width W (HU) instead of its own; several windows are settings, chosen per fold like the others.
    """
    label, named_spec = split_method_label(spec)  # NAME=SPEC names a candidate in the tables
    if label:
        return label, method_settings(named_spec, engine)[1]
    spec, _, window_list = spec.partition("@")
    if window_list:
        if spec == "region":
            raise ValueError("CT windows (@L/W) feed a model; HU region growing reads HU.")
        name, settings = method_settings(spec, engine)
        (factory,) = settings.values()
        windows = [parse_window(text) for text in window_list.split(",")]
        return f"{name} @ CT windows {window_list}", {
            f"window L{level:g}/W{width:g}": (lambda fold, window=PreprocessingConfig("window", level, width):
                                             factory(fold, preprocessing=window))
            for level, width in windows}
    if spec == "region":
        return "HU region growing (floor)", {
            f"{band[0]:.0f}-{band[1]:.0f} HU, opening {opening} px":
                (lambda fold, band=band, opening=opening: RegionGrowingSegmenter(band, opening))
            for band, opening in REGION_GROWING_SETTINGS}
    base, _, variant = spec.partition(":")
    variants = {"": "", "alone": " (model alone, no fallback)", "guided": " + intensity-guided region boxes",
                "no-second-opinion": " without lite-base's second opinion"}
    if variant.startswith("click="):
        configs = click_candidates(variant[len("click="):])
        variant = ""
    elif variant not in variants:
        raise ValueError(f"Unknown method variant {variant!r} in {spec!r}; "
                         "use one of ':alone', ':guided', ':no-second-opinion', ':click=NAME,NAME'.")
    else:
        configs = {"as shipped": ClickSegmentationConfig(answer_missed_clicks=variant != "alone",
                                                         intensity_guided=True if variant == "guided" else None)}
    name = {"lite-base": "lite-base + intensity-guided click handling",
            "lite": "shipped lite", "samihs": "shipped samihs"}.get(base, base) + variants[variant]
    predictors = FoldPredictors(base, engine, second_opinion=variant != "no-second-opinion")

    def factory(fold: int, config: ClickSegmentationConfig,
                preprocessing: Optional[PreprocessingConfig] = None) -> SliceSegmenter:
        return SessionSegmenter(predictors.for_fold(fold, preprocessing), config)

    return name, {setting: (lambda fold, config=config, **options: factory(fold, config, **options))
                  for setting, config in configs.items()}
