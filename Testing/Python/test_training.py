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


def test_boundary_weight_floor_gives_a_thin_bleed_the_jaccard_loss():
    line = torch.zeros(1, 1, 5, 9)
    line[..., 2, 1:8] = 1  # 1 px wide: every pixel is boundary, g = 0
    answer = torch.full_like(line, 0.5).requires_grad_(True)  # TP 3.5, FP 19, FN 3.5
    as_written = paper_boundary_loss(answer, line)
    assert as_written.item() == pytest.approx(1.0)
    as_written.backward()
    assert answer.grad.abs().max().item() < 1e-8  # nothing to learn from (only eps): why the floor exists
    answer.grad = None
    floored = paper_boundary_loss(answer, line, weight_floor=0.5)
    assert floored.item() == pytest.approx(1 - 3.5 / 26.0, rel=1e-5)
    floored.backward()
    assert answer.grad[line > 0].max().item() < -1e-3  # raising the bleed's probability lowers the loss
    big = torch.zeros(1, 1, 12, 12)
    big[..., 1:11, 1:11] = 1  # S 100, C 36: g = 0.64 >= the floor, so the paper's term is kept
    guess = torch.full_like(big, 0.3)
    assert paper_boundary_loss(guess, big, weight_floor=0.5).item() == paper_boundary_loss(guess, big).item()
    assert boundary_weight(torch.zeros_like(big), 0.5).item() == 0.0  # an empty target stays g = 0
    with pytest.raises(ValueError, match="paper's boundary loss"):
        samihs_loss(torch.zeros_like(line), line, boundary="authors", boundary_weight_floor=0.5)


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


def test_the_click_evaluation_clicks_as_the_app_does_on_a_real_slice(lite_model, real_slices_cases):
    """One real slice through the one evaluation harness: its first click gives what the app's
    click gives, and corrective clicks on this slice do not lose Dice."""
    from SAMIHSLib.interaction.click_segmentation import ClickSegmentationConfig, ClickSegmenter
    from SAMIHSLib.metrics import dice
    from training.click_crossval import EvalSlice, SessionSegmenter, simulate_clicks

    case = [c for c in real_slices_cases if c.name.startswith("075_30")][0]
    item = EvalSlice(case.name, case.patient, 0, case.image_hu[0], case.mask[0], None, case.spacing_zyx)
    predictor = SAMIHSPredictor(lite_model)
    records = simulate_clicks(SessionSegmenter(predictor, ClickSegmentationConfig()), item, "deepest", "lite", "-")
    predictor.set_volume(case.image_hu[0], case.spacing_zyx)
    app = ClickSegmenter(predictor).segment(0, [deepest_point(case.mask[0])]).prediction.mask
    one, three = records[0], records[1]
    assert (one.clicks, three.clicks) == (1, 3)
    assert one.dice_all == pytest.approx(dice(app, case.mask[0]), abs=1e-6)
    assert one.dice_all > 0.7 and one.hd95_clicked_mm < 20
    assert three.dice_clicked >= one.dice_clicked - 0.02


def test_folds_trained_a_few_per_call_add_up_in_the_record_and_another_recipe_replaces_them(tmp_path):
    """Folds trained a few per call (``foldtrain --only``) are all listed afterwards; a record written
    for another recipe is not mixed in."""
    import dataclasses

    from training.fold_training import record_trained_folds

    recipe = TrainingConfig(name="a", output_dir=str(tmp_path))
    model = lambda fold: tmp_path / f"fold{fold}" / "model.samihs.pt"  # noqa: E731
    record_trained_folds(tmp_path, [model(0), model(1)], recipe)
    listed = record_trained_folds(tmp_path, [model(3)], recipe)
    assert listed == [str(model(0)), str(model(1)), str(model(3))]
    assert json.loads((tmp_path / "folds_trained.json").read_text())["folds"] == listed
    other_recipe = dataclasses.replace(recipe, learning_rate=1e-4)
    assert record_trained_folds(tmp_path, [model(4)], other_recipe) == [str(model(4))]


@pytest.mark.slow
def test_crossval_trains_per_fold_evaluates_beside_the_floor_and_ships_its_figures(tmp_path):
    """``crossval``: one model per fold on the other folds' patients (the fold's own never), the
    click evaluation's table with the floor and the baseline, and ``ship`` records that summary."""
    import shutil

    from training.__main__ import main

    if not SHARED_SLICES.is_dir():
        unavailable("real ct-ich slices not available")
    data = tmp_path / "data"
    for name in ("049_21.dcm", "050_21.dcm", "051_23.dcm", "066_19.dcm"):  # four patients
        for part in ("images", "masks"):
            (data / part).mkdir(parents=True, exist_ok=True)
            shutil.copy(SHARED_SLICES / part / name, data / part / name)
    dataset = f"folder:{data}@{SHARED_PIXEL_SPACING_MM}"
    folds = tmp_path / "folds.json"
    assert main(["folds", "--dataset", dataset, "--count", "2", "-o", str(folds)]) == 0
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"name": "tiny", "adapter_positions": [], "cache_embeddings": True,
                                  "augmented_copies": 1, "augment": False, "max_steps": 2, "batch_size": 1,
                                  "device": "cpu", "seed": 1}))
    runs, out = tmp_path / "runs", tmp_path / "cv"
    assert main(["crossval", "--config", str(config), "--dataset", dataset, "--folds", str(folds),
                 "--runs", str(runs), "--out", str(out)]) == 0
    fold_scans = [fold["scans"] for fold in json.loads(folds.read_text())["folds"]]
    for fold, scans in enumerate(fold_scans):
        header = json.loads(torch.load(runs / f"fold{fold}" / "model.samihs.pt", weights_only=True)["header_json"])
        metrics = header["provenance"]["metrics"]
        assert metrics["held_out_scans"] == sorted(scans)
        assert not set(metrics["training_scans"]) & set(scans)
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["results"]) == ["HU region growing (floor)",
                                        "lite-base + intensity-guided click handling", "tiny"]
    assert summary["results"]["tiny"]["deepest, 1 click(s)"]["slices"] == 4
    assert "| tiny |" in (out / "table.md").read_text()
    shipped = tmp_path / "shipped.samihs.pt"
    assert main(["ship", "--config", str(config), "--dataset", dataset, "--trained",
                 str(runs / "fold0" / "model.samihs.pt"), "--metrics", str(out / "summary.json"),
                 "-o", str(shipped)]) == 0
    header = json.loads(torch.load(shipped, weights_only=True)["header_json"])
    assert header["provenance"]["metrics"] == summary["results"]
