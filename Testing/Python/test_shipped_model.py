"""The shipped default: the click-trained SAMIHS checkpoint (PR adapters + decoder over LiteMedSAM)."""

import numpy as np
import pytest

from SAMIHSLib.metrics import dice
from SAMIHSLib.models import load_model
from SAMIHSLib.models.checkpoint import read_samihs_checkpoint
from SAMIHSLib.model_names import DEFAULT_MODEL
from SAMIHSLib.models.files import SHIPPED_CLICK_MODEL, SHIPPED_STAGED_MODEL
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.prompts import SlicePrompt

from conftest import SHARED_PIXEL_SPACING_MM
from SAMIHSLib.interaction.regions import deepest_point

LOPO_CLICK_ROW = "fine-tuned, 1 click, clicks only"
BASE_CLICK_ROW = "base model, 1 click (intensity-guided click handling)"


@pytest.fixture(scope="module")
def shipped_model():
    return load_model("lite", device="cpu")


def test_lite_resolves_to_the_shipped_click_trained_checkpoint_and_the_default_follows_the_5_fold_rule(
        shipped_model):
    """The default is what the scan-level 5-fold table's shipping rule picked: ``lite`` must beat
    ``lite-base`` overall *and* be no worse than it by more than 0.03 on any subtype."""
    import csv
    from pathlib import Path

    assert shipped_model.config.trained_with_clicks
    records = Path(__file__).resolve().parents[2] / "training" / "results" / "real59_5fold" / "records.csv"
    with open(records, newline="") as handle:
        first = [r for r in csv.DictReader(handle) if r["protocol"] == "deepest" and r["clicks"] == "1"]

    def mean_dice(method: str, subtype: str = "") -> float:
        values = [float(r["dice_clicked"]) for r in first if r["method"] == method and subtype in ("", r["subtype"])]
        return sum(values) / len(values)

    lite, base = "shipped lite", "lite-base + intensity-guided click handling"
    subtypes = {r["subtype"] for r in first}
    lite_ok = mean_dice(lite) > mean_dice(base) and all(mean_dice(lite, s) >= mean_dice(base, s) - 0.03
                                                        for s in subtypes)
    assert lite_ok or DEFAULT_MODEL != "lite"
    assert shipped_model.config.adapters.enabled
    assert SHIPPED_CLICK_MODEL.stat().st_size < 12e6  # adapters + decoder in fp16; the base is not inside


def test_shipped_checkpoint_records_its_provenance_and_patient_level_metrics():
    provenance = read_samihs_checkpoint(SHIPPED_CLICK_MODEL).header["provenance"]
    config = provenance["training_config"]
    assert config["adapter_positions"] == ["attn", "mlp"] and config["learning_rate"] == 5e-4
    assert "ct-ich-slices" in provenance["data"] and provenance["commit"]
    metrics = provenance["metrics"]
    # recorded from the leave-one-patient-out run, not from the training patients
    assert metrics[LOPO_CLICK_ROW]["slices"] == 12
    assert metrics[LOPO_CLICK_ROW]["dice_slice"] > metrics[BASE_CLICK_ROW]["dice_slice"]


def test_the_staged_checkpoint_records_recipe_patients_folds_and_its_cross_validation():
    """``samihs``: what it was trained with, on which patients, and the per-fold figures of the same
    recipe, as the committed tables give them (training/results/*_staged)."""
    import json
    from pathlib import Path

    provenance = read_samihs_checkpoint(SHIPPED_STAGED_MODEL).header["provenance"]
    config = provenance["training_config"]
    assert config["trained_encoder_stages"] == 1 and config["corrective_clicks"] == 3
    assert config["adapter_positions"] == ["attn", "mlp"] and config["learning_rate"] == 5e-4
    assert "ct-ich/049" in provenance["data"] and "bhsd/mbh24v019" in provenance["data"]
    results = Path(__file__).resolve().parents[2] / "training" / "results"
    for run, folds in (("real59_5fold_staged", "real59_5fold.json"), ("volumes_5fold_staged", "ct_ich_all_5fold.json")):
        recorded = provenance["metrics"][run]
        assert recorded["folds_file"].endswith(folds)
        assert recorded["results"] == json.loads((results / run / "summary.json").read_text())["results"]
    model = load_model("samihs", device="cpu")
    assert model.config.trained_with_clicks and model.config.adapters.enabled
    assert SHIPPED_STAGED_MODEL.stat().st_size < 12e6


@pytest.mark.real_data
@pytest.mark.slow
def test_a_lone_click_is_answered_only_after_fine_tuning(shipped_model, lite_model, real_slices):
    """LiteMedSAM as released ignores a point prompt; the PR-adapter fine-tuning teaches it clicks.
    (In-sample: the shipped model was trained on these patients. The held-out figure is the LOPO
    metric above.)"""
    spacing = (5.0, SHARED_PIXEL_SPACING_MM, SHARED_PIXEL_SPACING_MM)
    scores = {"shipped": [], "base": []}
    for _, image, truth in real_slices:
        prompt = SlicePrompt([deepest_point(truth)], [])
        for name, model in (("shipped", shipped_model), ("base", lite_model)):
            predictor = SAMIHSPredictor(model)
            predictor.set_volume(image, spacing)
            scores[name].append(dice(predictor.predict(0, prompt).mask, truth))
    assert np.mean(scores["shipped"]) >= 0.75, scores
    assert np.mean(scores["base"]) < 0.3, scores
