"""Slices k-1, k, k+1 as the encoder's three channels (a training option of the fine-tuning issue):
the same input in training and in the app, saved with the model, and nothing changed for models
trained on one slice."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from SAMIHSLib.imaging.preprocessing import BRAIN_WINDOW, PreprocessingConfig, encoder_input, normalize_slice
from SAMIHSLib.imaging.transforms import SliceToModelTransform
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.models import AdapterConfig, build_model, load_model, save_finetuned_checkpoint
from training.augment import augment_slice
from training.batches import BatchMaker, build_trainable_model, training_slices
from training.datasets import Case
from training.training_config import TrainingConfig

from conftest import real_whole_ct

NEIGHBOURS = dataclasses.replace(BRAIN_WINDOW, neighbour_channels=True)


def _lite_with_neighbours(lite_model):
    model = build_model("tiny_vit", AdapterConfig(positions=()), NEIGHBOURS)
    model.load_state_dict(lite_model.state_dict())
    return model.eval()


@pytest.fixture(scope="module")
def bleed_case():
    """Five slices of patient 049's CT around its first bleed slice, as training reads a volume."""
    volume, mask = real_whole_ct("049")
    first = int(np.nonzero(mask.any(axis=(1, 2)))[0][0])
    picked = slice(first - 1, first + 4)
    return Case("049", "ct-ich/049", volume.array_hu[picked].astype(np.float32), mask[picked],
                (5.0, 0.45, 0.45))


def test_the_encoder_input_is_the_slice_and_its_neighbours_with_the_edges_repeated(bleed_case):
    volume = bleed_case.image_hu
    assert np.array_equal(encoder_input(volume, 2, BRAIN_WINDOW), normalize_slice(volume[2], BRAIN_WINDOW))
    middle = encoder_input(volume, 2, NEIGHBOURS)
    assert middle.shape == (3,) + volume.shape[1:]
    for channel, k in enumerate((1, 2, 3)):
        assert np.array_equal(middle[channel], normalize_slice(volume[k], BRAIN_WINDOW))
    first, last = encoder_input(volume, 0, NEIGHBOURS), encoder_input(volume, 4, NEIGHBOURS)
    assert np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    assert np.array_equal(last[2], last[1]) and not np.array_equal(last[0], last[1])
    lone = encoder_input(volume[2:3], 0, NEIGHBOURS)  # a single slice: grey, as without neighbours
    assert np.array_equal(lone[0], lone[1]) and np.array_equal(lone[1], lone[2])


def test_three_equal_channels_are_the_grey_input_and_a_wrong_shape_is_refused():
    image = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    transform = SliceToModelTransform(image.shape, 256)
    assert np.array_equal(transform.image_to_model(np.stack([image] * 3)), transform.image_to_model(image))
    stacked = transform.image_to_model(np.stack([image, image * 0.5, image]))
    assert np.array_equal(stacked[:, 0], transform.image_to_model(image)[:, 0])
    assert not np.array_equal(stacked[:, 1], stacked[:, 0])
    with pytest.raises(ValueError, match=r"\(3, rows, columns\)"):
        transform.image_to_model(np.stack([image] * 2))


def test_the_setting_is_checked_and_old_configs_read_as_one_slice():
    assert PreprocessingConfig.from_dict({k: v for k, v in BRAIN_WINDOW.to_dict().items()
                                          if k != "neighbour_channels"}) == BRAIN_WINDOW
    with pytest.raises(ValueError, match="neighbour_channels must be true or false"):
        PreprocessingConfig(neighbour_channels="yes")  # type: ignore[arg-type]
    assert BRAIN_WINDOW.cache_key() != NEIGHBOURS.cache_key()  # embeddings of the two never mix


def test_a_neighbour_model_is_fed_its_neighbours_by_the_predictor(lite_model, bleed_case):
    model = _lite_with_neighbours(lite_model)
    predictor = SAMIHSPredictor(model)
    predictor.set_volume(bleed_case.image_hu, bleed_case.spacing_zyx)
    transform = SliceToModelTransform(bleed_case.image_hu.shape[1:], 256)
    with torch.no_grad():
        expected = model.encode(torch.from_numpy(transform.image_to_model(encoder_input(bleed_case.image_hu, 2,
                                                                                        NEIGHBOURS))))
        grey = model.encode(torch.from_numpy(transform.image_to_model(normalize_slice(bleed_case.image_hu[2],
                                                                                      BRAIN_WINDOW))))
    embedding = predictor.encode_slice(2)
    assert torch.allclose(embedding, expected, atol=1e-5)
    assert float((embedding - grey).abs().max()) > 1e-2  # the neighbours reach the embedding


def test_a_stack_is_augmented_as_one_and_a_lone_slice_as_before(bleed_case):
    image, mask = bleed_case.image_hu[1], bleed_case.mask[1]
    moved, moved_mask, _, _ = augment_slice(image, mask, np.random.default_rng(3))
    stack_moved, stack_mask, _, _ = augment_slice(np.stack([image] * 3), mask, np.random.default_rng(3))
    assert np.array_equal(stack_mask, moved_mask)  # (the jitters differ: the stack draws 3 slices of noise)
    # the same rotation and shift: the slices differ by their own noise only (a few HU, not anatomy)
    assert stack_moved.shape == (3,) + image.shape
    assert all(float(np.median(np.abs(s - moved))) < 10 for s in stack_moved)
    unmoved = np.roll(image, 7, axis=1)
    assert float(np.median(np.abs(unmoved - moved))) > float(np.median(np.abs(stack_moved[0] - moved))) + 5


def test_training_feeds_the_neighbours_and_carries_a_pasted_bleed_through_them(bleed_case):
    config = TrainingConfig(name="neighbours", adapter_rank=8, cache_embeddings=True, trained_encoder_stages=1,
                            augment=False, paste_probability=1.0, neighbour_channels=True, device="cpu")
    model = build_trainable_model(config, torch.device("cpu"))
    assert model.config.preprocessing.neighbour_channels
    slices = training_slices([bleed_case])
    assert slices[0].neighbours_hu is not None
    donor = dataclasses.replace(slices[-1], patient="ct-ich/other")
    maker = BatchMaker(model, config, np.random.default_rng(1), donors=lambda sample: [donor])  # a seed that pastes
    prepared = maker.image_and_target(slices[0])
    channels = prepared.model_image[0]
    assert not torch.equal(channels[0], channels[1]) and not torch.equal(channels[2], channels[1])
    pasted = prepared.mask & ~slices[0].mask
    assert pasted.sum() > 20, "the donor's bleed was pasted"
    below, above = slices[0].neighbours_hu
    delta = prepared.image_hu - slices[0].image_hu
    near_paste = ndi.binary_dilation(pasted, iterations=2)  # its edge is feathered over a pixel
    assert float(np.abs(delta[pasted]).mean()) > 10 and not delta[~near_paste].any()
    # the neighbours carry exactly what the paste did to slice k
    transform = prepared.transform
    expected = transform.image_to_model(np.stack([normalize_slice(s, BRAIN_WINDOW)
                                                  for s in (below + delta, prepared.image_hu, above + delta)]))
    assert np.allclose(prepared.model_image.numpy(), expected, atol=1e-6)


def test_the_recipe_option_is_checked(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text('{"neighbour_channels": true, "zoom_probability": 0.5, "max_zoom": 2}')
    with pytest.raises(ValueError, match="zoom_probability cannot be combined with neighbour_channels"):
        TrainingConfig.from_json(path)
    path.write_text('{"neighbour_channels": 1}')
    with pytest.raises(ValueError, match="neighbour_channels in .* must be true or false"):
        TrainingConfig.from_json(path)


def test_a_saved_neighbour_model_loads_with_its_preprocessing(tmp_path, lite_model):
    model = _lite_with_neighbours(lite_model)
    path = save_finetuned_checkpoint(model, tmp_path / "neighbours.samihs.pt", {})
    assert load_model(str(path)).config.preprocessing.neighbour_channels


def test_the_stored_banks_key_follows_the_neighbours_only_where_they_are_fed(bleed_case):
    from training.bank_store import bank_key

    slices = training_slices([bleed_case])
    below, above = slices[0].neighbours_hu
    moved = [dataclasses.replace(slices[0], neighbours_hu=(below + 1, above))] + slices[1:]
    folds = [["ct-ich/049"]]
    grey = TrainingConfig(name="grey", cache_embeddings=True, trained_encoder_stages=1)
    fed = dataclasses.replace(grey, neighbour_channels=True)
    assert bank_key(fed, moved, folds) != bank_key(fed, slices, folds) != bank_key(grey, slices, folds)
    assert bank_key(grey, moved, folds) == bank_key(grey, slices, folds)
