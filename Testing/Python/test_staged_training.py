"""Staged training on CPU: the frozen front of the TinyViT is cached once and the adapted last stage
trains on it. The cache must be what the live encoder computes, the front must stay frozen, the
corrective rounds must feed the model's own answer back, and a few real steps must lower the loss
and give a checkpoint the command line runs."""

import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from SAMIHSLib.cli import main
from SAMIHSLib.interaction.predictor import BINARY_MASK_LOGIT
from SAMIHSLib.metrics import dice
from SAMIHSLib.models import load_model
from training.batches import BatchMaker, EmbeddingBank, TrainingPrompt, build_trainable_model, frozen_stages, \
    seed_everything, training_slices
from training.checkpoint_export import export_checkpoint
from training.datasets import load_dataset
from training.losses import samihs_loss
from training.prompts import deepest_point
from training.trainer import PromptedLoss, train
from training.training_config import TrainingConfig

from conftest import SHARED_PIXEL_SPACING_MM, SHARED_SLICES, unavailable

STAGED = TrainingConfig(name="staged", adapter_positions=("attn", "mlp"), adapter_rank=8, cache_embeddings=True,
                        trained_encoder_stages=1, augmented_copies=1, augment=False, batch_size=2,
                        clicked_bleed_target=True, extra_click_probability=0.0, device="cpu", seed=5)


@pytest.fixture(scope="module")
def real_training_slices():
    if not SHARED_SLICES.is_dir():
        unavailable("real ct-ich slices not available")
    cases = load_dataset("folder", str(SHARED_SLICES), pixel_spacing_mm=SHARED_PIXEL_SPACING_MM)
    return training_slices(cases)


def test_the_split_encoder_is_the_whole_encoder(lite_model, real_training_slices):
    maker = BatchMaker(lite_model, STAGED, np.random.default_rng(0))
    image = maker.image_and_target(real_training_slices[0]).model_image
    with torch.no_grad():
        whole = lite_model.encode(image)
        for stages in range(4):
            split = lite_model.encode_back(lite_model.encode_front(image, stages), stages)
            assert torch.equal(split, whole), stages
    with pytest.raises(ValueError, match="split after 4 stages"):
        lite_model.encode_front(image, 4)


def test_the_cached_front_gives_the_live_encoders_embedding(real_training_slices):
    model = build_trainable_model(STAGED, torch.device("cpu"))
    stages = frozen_stages(model, STAGED)
    assert stages == 3
    maker = BatchMaker(model, STAGED, np.random.default_rng(1))
    bank = EmbeddingBank(model, maker, real_training_slices[:2], 1, torch.device("cpu"), progress=False,
                         stages=stages)
    for (cached, prepared), in bank.items:
        assert cached.dtype == torch.float16 and cached.shape == (1, 64 * 64, 320)
        with torch.no_grad():
            live_front = model.encode_front(prepared.model_image, stages)
            assert torch.equal(cached, live_front.half())
            live = model.encode(prepared.model_image)
            from_cache = model.encode_back(cached.float(), stages)
        # fp16 storage of the front: the embedding moves by far less than its own spread
        assert float((from_cache - live).abs().max()) < 1e-3  # 1.7e-4 measured; the embedding's spread is 0.11
        assert float(torch.nn.functional.cosine_similarity(from_cache.flatten(), live.flatten(), dim=0)) > 0.9999


def test_staged_training_changes_only_the_trained_stage_and_lowers_the_loss(tmp_path, real_training_slices):
    config = dataclasses.replace(STAGED, max_steps=12, output_dir=str(tmp_path / "run"), corrective_clicks=1)
    slices = real_training_slices[:2]
    seed_everything(config.seed)  # as train() does: the same random adapter bases
    base = build_trainable_model(config, torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in base.named_parameters()}

    def fixed_loss(model):  # the clicked bleed from its deepest point, no augmentation
        maker = BatchMaker(model, config, np.random.default_rng(0))
        prepared = maker.image_and_target(slices[0])
        points = (torch.from_numpy(prepared.transform.points_to_model(np.array([deepest_point(prepared.mask)])))[None],
                  torch.tensor([[1]]))
        with torch.no_grad():
            logits, _ = model.decode(model.encode(prepared.model_image), points)
            return float(samihs_loss(logits, maker.target(prepared.mask, prepared.transform, torch.device("cpu"))))

    model, losses = train(config, slices, resume=False, progress=False)
    assert len(losses) == 12
    after = dict(model.named_parameters())
    for name, value in before.items():
        moved = not torch.equal(after[name].detach(), value)
        if name.startswith("image_encoder.layers.3.") and "adapter" in name and name.endswith("rescale"):
            assert moved, name
        elif name.startswith("image_encoder.") and not (name.startswith("image_encoder.layers.3.")
                                                        or "bases.attn_320" in name or "bases.mlp_320" in name):
            assert not moved, name  # the cached front is still the model's
    assert fixed_loss(model) < fixed_loss(base)

    path = export_checkpoint(model, config, tmp_path / "staged.samihs.pt", {"steps": len(losses)}, "2 slices")
    loaded = load_model(path, device="cpu")
    assert loaded.config.trained_with_clicks and loaded.config.adapters.enabled
    header = json.loads(torch.load(path, weights_only=True)["header_json"])
    assert header["provenance"]["training_config"]["trained_encoder_stages"] == 1

    # the command line runs it on a real slice file and answers the bleed under the click
    image_file = tmp_path / "slice.nii.gz"
    sample = slices[0]
    volume = sitk.GetImageFromArray(sample.image_hu[None].astype(np.int16))
    volume.SetSpacing((SHARED_PIXEL_SPACING_MM, SHARED_PIXEL_SPACING_MM, 5.0))
    sitk.WriteImage(volume, str(image_file))
    x, y = deepest_point(sample.mask)
    out = tmp_path / "mask.nii.gz"
    assert main(["segment", str(image_file), "--point", f"{int(x)},{int(y)},0", "--model", str(path),
                 "-o", str(out), "--device", "cpu", "--engine", "torch"]) == 0
    answer = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))[0] > 0
    assert answer[int(y), int(x)] and dice(answer, sample.mask) > 0.3  # 12 steps: 0.43 measured


def test_corrective_rounds_feed_the_models_own_answer_back(lite_model):
    """Round r decodes with r + 1 clicks and, after the first, the previous answer as a binary mask
    prompt; the new click lies on that answer's largest error."""
    calls = []
    model = lite_model

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = model.config

        def decode(self, embedding, points, boxes=None, mask_input=None):
            logits, iou = model.decode(embedding, points, boxes, mask_input)
            calls.append((points[0].clone(), points[1].clone(), None if mask_input is None else mask_input.clone(),
                          logits.detach().clone()))
            return logits, iou

    size = model.lowres_mask_size
    target = torch.zeros(1, 1, size, size)
    target[..., 40:200, 30:220] = 1  # far larger than what one click on noise gives: errors remain
    prompt = TrainingPrompt((torch.tensor([[[128.0, 128.0]]]), torch.tensor([[1]])), None, target, target, 2)
    with torch.no_grad():
        embedding = model.encode(torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)))
        PromptedLoss(Recording(), TrainingConfig())._item_loss(embedding, prompt)
    assert [len(c[1][0]) for c in calls] == [1, 2, 3]
    assert calls[0][2] is None
    for previous, current in zip(calls, calls[1:]):
        answer = previous[3][0, 0] > 0
        fed_back = current[2][0, 0]
        assert torch.equal(fed_back, torch.where(answer, BINARY_MASK_LOGIT, -BINARY_MASK_LOGIT))
        x, y = (int(round(float(v))) for v in current[0][0, -1])
        missed = bool(target[0, 0, y, x] > 0) and not bool(answer[y, x])
        extra = bool(answer[y, x]) and not bool(target[0, 0, y, x] > 0)
        assert missed or extra  # the click is on an error of the previous answer
        assert int(current[1][0, -1]) == int(missed)
