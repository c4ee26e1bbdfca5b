"""Checkpoints: our format round-trips, tampering and corruption are refused, the authors'
SAMIHS names and raw SAM state dicts load."""

import json

import pytest
import torch

from SAMIHSLib.models import AdapterConfig, CheckpointError, build_model, load_model, save_finetuned_checkpoint
from SAMIHSLib.models.files import LITE_MEDSAM_SHA256, lite_medsam_weights_path, sha256_file


def test_embedded_weights_are_the_expected_file():
    assert sha256_file(lite_medsam_weights_path()) == LITE_MEDSAM_SHA256
    assert LITE_MEDSAM_SHA256.startswith("79d8c9dc")


def _finetuned(lite_model):
    model = build_model("tiny_vit", AdapterConfig(rank=32)).eval()
    model.load_state_dict(lite_model.state_dict(), strict=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "rescale" in name or name.endswith("adapter.bias"):
                parameter.normal_(std=0.05)
    return model


def test_round_trip_reproduces_the_model(tmp_path, lite_model):
    model = _finetuned(lite_model)
    path = save_finetuned_checkpoint(model, tmp_path / "ft.pt", {"data": "unit test"}, half_precision=False)
    assert path.stat().st_size < 30_000_000  # a delta over the embedded base, not a full copy
    loaded = load_model(path, device="cpu")
    assert loaded.config == model.config
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.allclose(loaded.encode(image), model.encode(image), atol=1e-5)
        assert not torch.allclose(loaded.encode(image), lite_model.encode(image), atol=1e-3)


def test_tampered_checkpoint_is_rejected(tmp_path, lite_model):
    path = save_finetuned_checkpoint(_finetuned(lite_model), tmp_path / "ft.pt", {})
    data = torch.load(path, weights_only=True)
    name = next(iter(data["tensors"]))
    data["tensors"][name] = data["tensors"][name] + 1
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(path)


def test_truncated_empty_and_missing_checkpoints_are_rejected(tmp_path, lite_model):
    path = save_finetuned_checkpoint(_finetuned(lite_model), tmp_path / "ft.pt", {})
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(path)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pth")


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="Unknown model 'vit_z'"):
        load_model("vit_z")


def test_raw_lite_medsam_state_dict_is_recognised(tmp_path, lite_model):
    path = tmp_path / "raw.pth"
    torch.save(lite_model.state_dict(), path)
    assert load_model(path).config.backbone == "tiny_vit"


def test_authors_samihs_names_are_converted(tmp_path):
    """A state dict named as in mileswyn/SAMIHS (shared down projections, adpater_bias)."""
    ours = build_model("vit_b", AdapterConfig(rank=100))
    torch.manual_seed(0)
    theirs = {}
    for name, tensor in ours.state_dict().items():
        if ".adapter_bank.bases.attn_768.down" in name:
            theirs["image_encoder.att_down_projection"] = torch.randn_like(tensor)
        elif ".adapter_bank.bases.mlp_768.down" in name:
            theirs["image_encoder.mlp_down_projection"] = torch.randn_like(tensor)
        elif name.endswith("_adapter.rescale"):
            theirs[name.replace(".rescale", ".adapter_rescale")] = torch.randn(1, tensor.numel())
        elif name.endswith("_adapter.bias"):
            theirs[name.replace(".bias", ".adpater_bias")] = torch.randn_like(tensor)
        else:
            theirs[name] = tensor
    path = tmp_path / "samihs_authors.pth"
    torch.save(theirs, path)
    loaded = load_model(path)
    block = loaded.image_encoder.blocks[3]
    assert torch.equal(block.mlp_adapter.rescale, theirs["image_encoder.blocks.3.mlp_adapter.adapter_rescale"][0])
    assert torch.equal(loaded.image_encoder.adapter_bank.bases["attn_768"].down,
                       theirs["image_encoder.att_down_projection"])


def test_checkpoint_header_records_config_and_provenance(tmp_path, lite_model):
    path = save_finetuned_checkpoint(_finetuned(lite_model), tmp_path / "ft.pt", {"commit": "abc"})
    header = json.loads(torch.load(path, weights_only=True)["header_json"])
    assert header["model_config"]["backbone"] == "tiny_vit"
    assert header["model_config"]["preprocessing"]["window_width_hu"] == 80.0
    assert header["provenance"] == {"commit": "abc"}
    assert header["base"]["sha256"] == LITE_MEDSAM_SHA256
