"""The training package: losses on hand-computed cases, prompt simulation, dataset readers,
a short real training on the real ct-ich slices, and the export loading back."""

import json

import numpy as np
import pytest
import torch

from SAMIHSLib.models import load_model
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.prompts import SlicePrompt
from SAMIHSLib.interaction.regions import slice_with_most
from training.datasets import DatasetError, load_dataset, phantom_cases, write_packed
from training.evaluate import patient_folds
from training.losses import authors_boundary_loss, boundary_weight, paper_boundary_loss, samihs_loss
from training.prompts import corrective_click, deepest_point, jittered_box, random_foreground_click, region_box
from training.batches import training_slices
from training.checkpoint_export import export_checkpoint
from training.trainer import train
from training.training_config import TrainingConfig

from conftest import SHARED_PIXEL_SPACING_MM, SHARED_SLICES, unavailable


def _square(size=5, inner=3):
    target = torch.zeros(1, 1, size, size)
    start = (size - inner) // 2
    target[..., start:start + inner, start:start + inner] = 1
    return target


def test_paper_boundary_loss_by_hand():
    target = _square()  # 3x3 square: S = 9, boundary C = 8, g = 1/9
    assert boundary_weight(target).item() == pytest.approx(1 / 9)
    assert paper_boundary_loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.full_like(target, 0.5)  # TP 4.5, FP 8, FN 4.5
    assert paper_boundary_loss(half, target).item() == pytest.approx(1 - 1 / 13.5, rel=1e-5)


def test_authors_boundary_loss_by_hand():
    target = _square()  # alpha = 2 (1 - 8/9) - 1 = -7/9
    half = torch.full_like(target, 0.5)  # sum p^2 = 6.25, sum t^2 = 9, I = 4.5
    assert authors_boundary_loss(half, target).item() == pytest.approx(6.25 / 14.25, rel=1e-4)


def test_combined_loss_weights_and_ablation():
    target = _square()
    logits = torch.zeros_like(target)
    bce_only = samihs_loss(logits, target, boundary="none")
    combined = samihs_loss(logits, target, boundary="paper")
    assert combined.item() == pytest.approx(0.5 * bce_only.item() + 0.5 * (1 - 1 / 13.5), rel=1e-5)
    with pytest.raises(ValueError, match="Unknown boundary loss"):
        samihs_loss(logits, target, boundary="dice")


def test_prompt_simulation():
    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:15] = True
    mask[20:38, 20:38] = True  # the larger component
    assert deepest_point(mask) in [(28.0, 28.0), (29.0, 29.0), (28.0, 29.0), (29.0, 28.0)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = random_foreground_click(mask, rng)
        assert mask[int(y), int(x)]
        x0, y0, x1, y1 = jittered_box(mask, rng)
        assert abs(x0 - 5) <= 10 and abs(x1 - 37) <= 10 and x0 <= x1 and y0 <= y1
    prediction = mask.copy()
    prediction[20:38, 20:30] = False  # missed part of the big bleed
    (x, y), positive = corrective_click(prediction, mask)
    assert positive and mask[int(y), int(x)] and not prediction[int(y), int(x)]
    assert corrective_click(mask, mask) is None


def test_patient_folds_never_leak(real_slices_cases):
    for train_patients, test_patients in patient_folds(real_slices_cases, folds=0):
        assert len(test_patients) == 1 and not set(train_patients) & set(test_patients)
    folds = patient_folds(real_slices_cases, folds=5)
    assert len(folds) == 5 and sorted(p for _, test in folds for p in test) == sorted(
        {c.patient for c in real_slices_cases})


def test_malformed_datasets_are_explained(tmp_path):
    with pytest.raises(DatasetError, match="ct_scans"):
        load_dataset("bcihm", str(tmp_path))
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "001_1.nrrd").write_bytes(b"")
    with pytest.raises(DatasetError, match="no mask"):
        load_dataset("folder", str(tmp_path))
    with pytest.raises(DatasetError, match="Unknown dataset kind"):
        load_dataset("brats", str(tmp_path))


def test_packed_dataset_round_trips_and_bad_packs_are_explained(tmp_path):
    cases = phantom_cases(2, seed=4, shape=(3, 96, 96))
    packed = load_dataset("packed", str(write_packed(cases, tmp_path / "cases.npz")))
    for before, after in zip(cases, packed):
        assert (after.name, after.patient, after.spacing_zyx) == (before.name, before.patient, before.spacing_zyx)
        assert np.array_equal(after.mask, before.mask)
        assert np.abs(after.image_hu - before.image_hu).max() <= 0.5  # stored as int16 HU
    with pytest.raises(DatasetError, match="Expected a packed dataset"):
        load_dataset("packed", str(tmp_path / "missing.npz"))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a packed dataset"):
        load_dataset("packed", str(tmp_path / "broken.npz"))


def test_region_box_is_the_box_the_app_makes_around_a_click():
    case = phantom_cases(1, seed=2, shape=(3, 256, 256))[0]
    k = slice_with_most(case.mask)
    click = deepest_point(case.mask[k])
    rng = np.random.default_rng(0)
    box = region_box(case.image_hu[k], click, case.spacing_zyx[1], rng)
    rows, cols = np.nonzero(case.mask[k])
    assert box is not None and box[0] <= click[0] <= box[2] and box[1] <= click[1] <= box[3]
    # the hyperdense bleed's box, give or take the opening and the margin
    assert abs(box[0] - cols.min()) < 8 and abs(box[3] - rows.max()) < 8
    assert region_box(case.image_hu[k], (5.0, 5.0), case.spacing_zyx[1], rng) is None  # air: no region


def test_phantom_cases_have_bleeds():
    cases = phantom_cases(2, seed=1, shape=(3, 128, 128))
    assert all(case.mask.any() and case.image_hu.min() < -900 for case in cases)


@pytest.fixture(scope="module")
def real_slices_cases():
    if not SHARED_SLICES.is_dir():
        unavailable("real ct-ich slices not available")
    return load_dataset("folder", str(SHARED_SLICES), pixel_spacing_mm=SHARED_PIXEL_SPACING_MM)


@pytest.mark.slow
def test_short_real_training_lowers_the_loss_and_exports(tmp_path, real_slices_cases):
    config = TrainingConfig(name="ci", adapter_positions=(), cache_embeddings=True, augmented_copies=1,
                            augment=False, max_steps=16, batch_size=2, extra_click_probability=0.0,
                            output_dir=str(tmp_path / "run"), device="cpu", seed=3)
    slices = training_slices(real_slices_cases)[:4]
    model, losses = train(config, slices, progress=False)
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses
    assert (tmp_path / "run" / "train_log.csv").read_text().count("\n") == 17
    path = export_checkpoint(model, config, tmp_path / "ci.samihs.pt", {"dice": 0.0}, "4 ct-ich slices")
    loaded = load_model(path, device="cpu")
    assert loaded.config.trained_with_clicks
    header = json.loads(torch.load(path, weights_only=True)["header_json"])
    assert header["provenance"]["training_config"]["max_steps"] == 16
    image, mask = slices[0].image_hu, slices[0].mask
    outputs = []
    for candidate in (model, loaded):
        predictor = SAMIHSPredictor(candidate)
        predictor.set_volume(image)
        outputs.append(predictor.predict(0, SlicePrompt([deepest_point(mask)])).mask)
    assert np.mean(outputs[0] == outputs[1]) > 0.999  # fp16 storage may flip a few edge pixels

    resumed_config = TrainingConfig(**{**config.to_dict(), "max_steps": 18})
    _, resumed_losses = train(resumed_config, slices, progress=False)
    assert len(resumed_losses) == 18 and resumed_losses[:16] == losses

    # a wall-time limit stops early and still leaves a resumable state
    limited = TrainingConfig(**{**config.to_dict(), "max_steps": 30, "max_minutes": 0.0})
    _, limited_losses = train(limited, slices, progress=False)
    assert len(limited_losses) == 18
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 18


def test_adapters_receive_gradients(tmp_path, real_slices_cases):
    config = TrainingConfig(name="adapters", adapter_positions=("attn", "mlp"), adapter_rank=8, max_steps=1,
                            batch_size=1, augment=False, output_dir=str(tmp_path / "a"), device="cpu")
    model, losses = train(config, training_slices(real_slices_cases)[:1], progress=False)
    rescales = [p for n, p in model.named_parameters() if n.endswith("adapter.rescale")]
    assert rescales and any(float(p.abs().sum()) > 0 for p in rescales)  # moved away from zero init
    assert not any(p.requires_grad for n, p in model.named_parameters()
                   if n.startswith("image_encoder.") and "adapter" not in n)


def test_evaluation_protocol_on_a_real_slice(lite_model, real_slices_cases):
    """One real slice through the evaluation: 1 click equals what the app's click gives; a
    3-click run never scores below the 1-click run on this slice's simulated corrections."""
    from SAMIHSLib.interaction.click_segmentation import ClickSegmenter
    from SAMIHSLib.metrics import dice
    from training.evaluate import evaluate_cases

    case = [c for c in real_slices_cases if c.name.startswith("075_30")][0]
    predictor = SAMIHSPredictor(lite_model)
    rows, summary = evaluate_cases(predictor, [case], clicks=1, use_click_handling=True)
    predictor.set_volume(case.image_hu[0], case.spacing_zyx)
    app = ClickSegmenter(predictor).segment(0, [deepest_point(case.mask[0])]).prediction.mask
    assert rows[0].dice == pytest.approx(dice(app, case.mask[0]), abs=0.01)
    assert summary["slices"] == 1 and summary["hd95_mm"] < 20
    _, three = evaluate_cases(predictor, [case], clicks=3, use_click_handling=True)
    assert three["dice_slice"] >= summary["dice_slice"] - 0.02
