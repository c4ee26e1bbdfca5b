"""The cross-validated click evaluation: folds by scan written down and honoured, settings chosen
on training folds only, corrective clicks as a user makes them; and the never-empty click rule
on real CT."""

from pathlib import Path

import numpy as np
import pytest

from SAMIHSLib.interaction.regions import component_at
from training.click_crossval import (ClickRecord, RegionGrowingSegmenter, evaluation_slices, first_click,
                                     select_per_fold, simulate_clicks)
from training.datasets import SUBTYPES, load_dataset
from training.folds import make_scan_folds, read_folds

from conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
FOLDS = REPO / "training" / "folds" / "real59_5fold.json"


@pytest.fixture(scope="module")
def shared_cases():
    if not (SHARED_DATA / "mbh-2024-slices").is_dir():
        unavailable(f"the shared real slices are not at {SHARED_DATA}")
    return load_dataset("shared_real", str(SHARED_DATA))


def test_all_59_real_slices_of_35_scans_are_read_with_subtypes(shared_cases):
    assert len(shared_cases) == 59 and len({c.patient for c in shared_cases}) == 35
    labelled = [c for c in shared_cases if c.subtype_labels is not None]
    assert len(labelled) == 36  # the BHSD/MBH slices carry five-class masks
    present = set().union(*(set(np.unique(c.subtype_labels).tolist()) for c in labelled)) - {0}
    assert present == set(SUBTYPES)  # all five subtypes occur
    assert all((c.subtype_labels > 0).sum() == c.mask.sum() for c in labelled)


def test_the_written_folds_split_by_scan_and_cover_every_slice(shared_cases):
    folds = read_folds(FOLDS, shared_cases)
    assert len(folds) == 5
    scans = [scan for fold in folds for scan in fold]
    assert len(scans) == len(set(scans)) == 35  # every scan in exactly one fold
    slices = evaluation_slices(shared_cases, folds)
    assert len(slices) == 59
    for fold in range(5):
        test_scans = {s.scan for s in slices if s.fold == fold}
        train_scans = {s.scan for s in slices if s.fold != fold}
        assert test_scans and not test_scans & train_scans  # no slice of a test scan in training
    assert make_scan_folds(shared_cases, 5) == folds  # the file is what the documented procedure makes


def test_settings_are_chosen_on_the_other_folds_only():
    def record(setting, fold, value):
        return ClickRecord("m", setting, f"s{fold}", f"scan{fold}", "d", fold, "IPH", "deepest", 1, value, value, 1.0,
                           False, "", "")

    # Setting "a" is best on fold 0's own slice, "b" everywhere else: fold 0 must get "b".
    records = [record("a", 0, 1.0), record("b", 0, 0.0), record("a", 1, 0.2), record("b", 1, 0.9),
               record("a", 2, 0.3), record("b", 2, 0.8)]
    chosen_records, chosen = select_per_fold(records, 3)
    assert chosen["m"][0] == "b"
    assert [r.dice_clicked for r in chosen_records if r.fold == 0] == [0.0]


def test_clicks_are_inside_the_clicked_bleed_and_corrections_follow_the_errors(shared_cases):
    folds = read_folds(FOLDS, shared_cases)
    item = next(s for s in evaluation_slices(shared_cases, folds) if s.subtype_labels is not None)
    for protocol in ("deepest", "random"):
        click = first_click(item.truth, protocol, item.name)
        assert item.truth[int(click[1]), int(click[0])]
        assert first_click(item.truth, protocol, item.name) == click  # seeded: every method gets it
    records = simulate_clicks(RegionGrowingSegmenter((45.0, 100.0), 1), item, "deepest", "floor", "45-100")
    assert [r.clicks for r in records] == [1, 3, 5]
    target = component_at(item.truth, first_click(item.truth, "deepest", item.name))
    assert target.sum() <= item.truth.sum() and all(0.0 <= r.dice_clicked <= 1.0 for r in records)


def test_a_correction_goes_at_the_deepest_point_of_the_largest_error_with_its_sign():
    from SAMIHSLib.interaction.regions import disc_around
    from training.prompts import corrective_click

    shape = (200, 200)
    truth = disc_around(shape, (100.0, 100.0), 40.0)
    missed_half = truth & (np.arange(200)[None, :] < 100)  # the answer covers only the right half
    click, positive = corrective_click(truth & ~missed_half, truth)
    assert positive and missed_half[int(click[1]), int(click[0])]
    assert abs(click[0] - 80) <= 3 and abs(click[1] - 100) <= 3  # deepest point of the missed half-disc
    leak = disc_around(shape, (170.0, 170.0), 25.0) & ~truth  # a larger false blob than a small miss
    small_miss = truth & disc_around(shape, (100.0, 62.0), 6.0)
    click, positive = corrective_click((truth & ~small_miss) | leak, truth)
    assert not positive and leak[int(click[1]), int(click[0])]
    # bleed elsewhere on the slice is not a false positive: the small miss is the error left
    click, positive = corrective_click((truth & ~small_miss) | leak, truth, also_true=leak)
    assert positive and small_miss[int(click[1]), int(click[0])]
    assert corrective_click(truth, truth) is None


@pytest.mark.parametrize("name", ["mbh24v075_s013.nrrd", "mbh24v072_s019.nrrd"])  # IVH; hypodense (chronic) SDH
def test_a_click_the_model_misses_still_returns_the_bleed_under_it(shared_cases, name):
    """On these real slices the shipped model's own answer does not contain the click (so the user
    got an EMPTY mask before); now the fallbacks answer with a mask that contains it, and say so."""
    from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig
    from SAMIHSLib.models import load_model
    from SAMIHSLib.interaction.predictor import SAMIHSPredictor
    from SAMIHSLib.interaction.regions import deepest_point
    from SAMIHSLib.interaction.session import HemorrhageSession

    case = next(c for c in shared_cases if c.name == name)
    predictor = SAMIHSPredictor(load_model("lite", device="cpu"))
    predictor.set_volume(case.image_hu, case.spacing_zyx)
    click = deepest_point(case.mask[0])
    row, col = int(click[1]), int(click[0])
    alone = HemorrhageSession(predictor, ClickSegmentationConfig(answer_missed_clicks=False))
    alone.click(0, [click], propagate=False)
    assert not alone.mask[0, row, col]  # the model alone misses the click (the reported failure)
    session = HemorrhageSession(predictor)
    outcome = session.click(0, [click], propagate=False)
    assert session.mask[0, row, col] and session.mask[0].sum() >= 20
    assert "missed the click" in outcome.message and outcome.slice_methods[0] != "prompt"
    rows, cols = np.nonzero(session.mask[0])
    reach_px = 10.0 / case.spacing_zyx[1] + 1  # a fallback answer is a local blob around the click
    assert np.hypot(rows - row, cols - col).max() <= reach_px


def test_records_read_back_as_written():
    from training.click_crossval import ClickRecord
    from training.detector_crossval import DetectionRecord, detection_records_csv
    from training.record_csv import read_records_csv, records_csv

    records = [ClickRecord("m", "s", "a.dcm", "ct-ich/001", "ct-ich", 2, "IPH", "deepest", 3, 0.5, 0.25, 7.5, True,
                           "model", "no bleed found, at 12 HU"),
               ClickRecord("m", "s", "b.dcm", "bhsd/x", "bhsd", 0, "SDH", "random", 1, 0.0, 0.0, float("inf"), False,
                           "fallback", "")]
    assert read_records_csv(records_csv(records, ClickRecord), ClickRecord) == records
    # The detector's files hold 6 significant digits and \n line ends (as committed).
    detected = DetectionRecord("pixel>0.7", "075", 1, True, 12.3456789, 13.0, 0.123456789, 2, 1, 3, 0.99)
    text = detection_records_csv([detected])
    assert "\r" not in text and text.splitlines()[1] == "pixel>0.7,075,1,True,12.3457,13,0.123457,2,1,3,0.99"
    assert read_records_csv(text, DetectionRecord)[0].found_ml == 12.3457


def test_ct_windows_are_settings_of_a_model_each_feeding_it_that_window():
    from training.click_crossval import method_settings

    name, settings = method_settings("lite-base@40/80,60/120")
    assert "CT windows 40/80,60/120" in name and list(settings) == ["window L40/W80", "window L60/W120"]
    fed = settings["window L60/W120"](0).predictor.model.config.preprocessing
    assert (fed.kind, fed.window_level_hu, fed.window_width_hu) == ("window", 60.0, 120.0)
    for spec, said in (("lite-base@40-80", "LEVEL/WIDTH"), ("lite-base@40/0", "width"), ("region@40/80", "HU")):
        with pytest.raises(ValueError, match=said):
            method_settings(spec)


def test_both_harnesses_run_a_click_trained_model_with_the_apps_second_opinion_unless_told_not_to():
    from training.click_crossval import method_settings
    from training.volume_eval import volume_method_settings

    name, settings = method_settings("samihs")
    predictor = settings["as shipped"](0).predictor
    assert predictor.model.config.trained_with_clicks
    assert not predictor.second_opinion.model.config.trained_with_clicks
    assert volume_method_settings("samihs")[1]["as shipped"](0).predictor.second_opinion is not None
    name, settings = method_settings("samihs:no-second-opinion")
    assert name == "shipped samihs without lite-base's second opinion"
    assert settings["as shipped"](0).predictor.second_opinion is None
    assert volume_method_settings("samihs:no-second-opinion")[1]["as shipped"](0).predictor.second_opinion is None
    assert method_settings("lite-base")[1]["as shipped"](0).predictor.second_opinion is None
    with pytest.raises(ValueError, match="no-second-opinion"):
        method_settings("samihs:second")
    with pytest.raises(ValueError, match="no-second-opinion"):
        volume_method_settings("samihs:second")


def test_a_label_names_a_method_in_both_harnesses_and_an_option_keeps_its_equals_sign():
    from training.click_crossval import method_settings, split_method_label
    from training.volume_eval import volume_method_settings

    assert split_method_label("staged (per fold)=runs/x/fold{fold}/model.samihs.pt") == \
        ("staged (per fold)", "runs/x/fold{fold}/model.samihs.pt")
    option = "lite-base:propagation=as shipped,contrast >= 2 HU only"
    assert split_method_label(option) == ("", option)
    assert split_method_label("acute=" + option) == ("acute", option)
    assert method_settings("mine=region")[0] == "mine"
    assert volume_method_settings("mine=region")[0] == "mine"
    assert list(volume_method_settings("acute=" + option)[1]) == ["as shipped", "contrast >= 2 HU only"]


def test_click_settings_are_settings_of_a_method_in_both_harnesses():
    from training.click_crossval import method_settings
    from training.volume_eval import volume_method_settings

    unlike = "second opinion on answers unlike the clicked blood"
    for settings in (method_settings(f"samihs:click=as shipped,{unlike}")[1],
                     volume_method_settings(f"samihs:click=as shipped,{unlike}")[1]):
        assert list(settings) == ["as shipped", unlike]
        configs = {}
        for name, factory in settings.items():
            segmenter = factory(0)
            segmenter.start(np.linspace(-1000, 80, 32 * 32).reshape(1, 32, 32), (5.0, 0.5, 0.5))  # any CT
            configs[name] = segmenter.session.click_segmenter.config
        assert not configs["as shipped"].second_opinion_on_unlike_answers
        assert configs[unlike].second_opinion_on_unlike_answers
    for build in (method_settings, volume_method_settings):
        with pytest.raises(ValueError, match="Unknown click setting"):
            build("samihs:click=as shipped,bolder")


def test_every_candidate_setting_can_be_named_on_the_command_line():
    """Settings are named NAME,NAME: a comma inside a name would make it unselectable."""
    from training.click_candidates import CLICK_CANDIDATES
    from training.propagation_candidates import DETECTOR_JOIN_CANDIDATES, PROPAGATION_CANDIDATES

    for candidates in (CLICK_CANDIDATES, PROPAGATION_CANDIDATES, DETECTOR_JOIN_CANDIDATES):
        assert [name for name in candidates if "," in name or not name.strip()] == []


def _session_after_first_click(case, model):
    """(predictor, session, click): ``model`` on the case's one slice, after the evaluation's first
    (deepest) click, applied as the app applies it."""
    from SAMIHSLib.interaction.predictor import SAMIHSPredictor
    from SAMIHSLib.interaction.session import HemorrhageSession

    predictor = SAMIHSPredictor(model)
    predictor.set_volume(case.image_hu, case.spacing_zyx)
    click = first_click(case.mask[0], "deepest", case.name)
    session = HemorrhageSession(predictor)
    session.click(0, [click], propagate=False)
    return predictor, session, click


def test_a_click_whose_hu_band_floods_the_brain_answers_the_bleed_not_the_head(shared_cases, lite_model):
    """ct-ich JPG patient 078 (approximate HU): the blood band around a click on a thin epidural
    bleed runs into most of the brain, and the embedded model answered that whole region (Dice 0.01).
    No bleed fills the head: such candidates are refused and the answer is local, at the click."""
    from SAMIHSLib.interaction.regions import MAX_HEAD_FRACTION, head_area_px
    from SAMIHSLib.metrics import dice

    case = next(c for c in shared_cases if c.name == "078_17.nrrd")
    predictor, session, click = _session_after_first_click(case, lite_model)
    answer = session.mask[0]
    head_px = head_area_px(predictor.denoised_slice(0))
    assert answer[int(click[1]), int(click[0])]
    assert answer.sum() < 0.05 * head_px < MAX_HEAD_FRACTION * head_px  # was ~65 % of the head
    assert dice(answer, component_at(case.mask[0], click)) > 0.5  # measured 0.531


def test_a_positive_correction_never_gives_back_what_negative_clicks_took(shared_cases, lite_model):
    """Real slice 049_21 (a thin extra-axial bleed), corrected as the evaluation's user does: two
    negative clicks cut false area, then a positive click lands on a miss more than 4 mm from what is
    left. That click used to start a fresh object that brought back everything the negatives took
    (the mask went back to the first answer); now it claims only what is nearer to it than to them."""
    from training.prompts import corrective_click

    case = next(c for c in shared_cases if c.name == "049_21.dcm")
    _, session, click = _session_after_first_click(case, lite_model)
    target = component_at(case.mask[0], click)
    removed = np.zeros_like(target)
    for _ in range(4):
        (x, y), positive = corrective_click(session.mask[0], target, also_true=case.mask[0])
        before = session.mask[0].copy()
        session.click(0, [(x, y)] if positive else [], [] if positive else [(x, y)], propagate=False)
        if positive:
            break
        removed |= before & ~session.mask[0]
    assert positive and removed.sum() > 100  # the sequence this test is about happened
    assert (session.mask[0] & removed).sum() < 0.25 * removed.sum()
