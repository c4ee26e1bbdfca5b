"""The staged training's embedding bank on disk: a fold trained on a stored bank is the fold trained
on a freshly built one, and the bank's key changes with what builds it and only with that."""

import dataclasses

import pytest
import torch

from training.bank_store import bank_key
from training.batches import training_slices
from training.datasets import load_dataset
from training.fold_training import train_folds
from training.training_config import TrainingConfig

from conftest import SHARED_PIXEL_SPACING_MM, SHARED_SLICES, unavailable

RECIPE = TrainingConfig(name="stored", adapter_positions=("attn", "mlp"), adapter_rank=8, cache_embeddings=True,
                        trained_encoder_stages=1, augmented_copies=2, paste_probability=0.5, batch_size=2,
                        max_steps=2, clicked_bleed_target=True, extra_click_probability=0.0, device="cpu", seed=3)


@pytest.fixture(scope="module")
def four_patients():
    """Real ct-ich slices of four patients in two folds (bleeds are pasted within a fold)."""
    if not SHARED_SLICES.is_dir():
        unavailable("real ct-ich slices not available")
    cases = load_dataset("folder", str(SHARED_SLICES), pixel_spacing_mm=SHARED_PIXEL_SPACING_MM)
    patients = sorted({case.patient for case in cases})[:4]
    return [case for case in cases if case.patient in patients], [patients[:2], patients[2:]]


@pytest.mark.slow  # two short trainings
def test_a_fold_trained_on_the_stored_bank_is_the_fold_trained_on_a_built_one(tmp_path, four_patients, capsys):
    cases, folds = four_patients
    store = tmp_path / "banks"
    train_folds(RECIPE, cases, folds, tmp_path / "built", only=[0], progress=False, bank_folder=store)
    (stored,) = store.glob("*.pt")
    assert "embedding bank read" not in capsys.readouterr().out
    train_folds(RECIPE, cases, folds, tmp_path / "read", only=[0], progress=False, bank_folder=store)
    assert f"embedding bank read from {stored}" in capsys.readouterr().out
    built, read = (torch.load(tmp_path / run / "fold0" / "last.pt", weights_only=True) for run in ("built", "read"))
    assert built["losses"] == read["losses"]
    assert built["model"].keys() == read["model"].keys()
    assert all(torch.equal(built["model"][name], read["model"][name]) for name in built["model"])


def test_the_bank_key_follows_what_builds_the_bank_and_not_how_it_is_trained(four_patients):
    cases, folds = four_patients
    slices = training_slices(cases)
    key = bank_key(RECIPE, slices, folds)
    trained_otherwise = dataclasses.replace(RECIPE, name="other", boundary_weight_floor=0.5, learning_rate=1e-3,
                                            max_steps=500, corrective_clicks=3)
    assert bank_key(trained_otherwise, slices, folds) == key
    for built_otherwise in ({"augmented_copies": 3}, {"seed": 4}, {"paste_probability": 0.0},
                            {"trained_encoder_stages": 2}, {"aged_bleed_probability": 0.5}):
        assert bank_key(dataclasses.replace(RECIPE, **built_otherwise), slices, folds) != key, built_otherwise
    assert bank_key(RECIPE, slices, [folds[1], folds[0]]) != key  # other folds: other donors
    edited = [dataclasses.replace(slices[0], image_hu=slices[0].image_hu + 1)] + slices[1:]
    assert bank_key(RECIPE, edited, folds) != key
