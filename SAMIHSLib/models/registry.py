"""A tiny builder registry (in the spirit of segment-anything's ``sam_model_registry``) and the
one function that turns a model spec (``"lite"``, ``"lite-base"``, ``"vit_b"`` or a checkpoint
path) into a ready model.

Backbones are named for their architecture (``tiny_vit``: LiteMedSAM's TinyViT at 256x256;
``vit_b``: SAM ViT-B at 1024x1024); shipped models for what they are (``samihs`` and ``lite``: fine-tuned
SAMIHS checkpoints; ``lite-base``: LiteMedSAM as released, the default, ``model_names.DEFAULT_MODEL``)."""

import dataclasses
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch

from SAMIHSLib.device import resolve_device
from SAMIHSLib.model_names import DEFAULT_MODEL, MODEL_SPECS
from SAMIHSLib.imaging.preprocessing import BRAIN_WINDOW, PreprocessingConfig
from SAMIHSLib.models.adapters import adapter_parameter_names
from SAMIHSLib.models.checkpoint import (
    SamihsCheckpoint,
    convert_authors_samihs_state_dict,
    load_any_checkpoint,
    load_verified_weights,
    looks_like_authors_samihs,
    write_samihs_checkpoint,
)
from SAMIHSLib.models.config import AdapterConfig, ModelConfig
from SAMIHSLib.models.files import (
    LITE_MEDSAM_SHA256,
    SHIPPED_CHECKPOINTS,
    CheckpointError,
    lite_medsam_weights_path,
    sha256_file,
)
from SAMIHSLib.models.image_encoder_vit import ImageEncoderViT
from SAMIHSLib.models.mask_decoder import MaskDecoder
from SAMIHSLib.models.prompt_encoder import PromptEncoder
from SAMIHSLib.models.sam import SegmentAnythingModel
from SAMIHSLib.models.tiny_vit import TinyViT
from SAMIHSLib.models.transformer import TwoWayTransformer

# Default PR-adapter ranks: the authors' 100 for ViT-B (~174k parameters); TinyViT's widths
# are 128-320, so a smaller basis keeps the adapter well below full rank.
DEFAULT_ADAPTERS = {"tiny_vit": AdapterConfig(rank=32), "vit_b": AdapterConfig(rank=100)}


def _prompt_encoder_and_decoder(image_size: int, embedding_side: int):
    prompt_encoder = PromptEncoder(embed_dim=256, image_embedding_size=(embedding_side, embedding_side),
                                   input_image_size=(image_size, image_size), mask_in_chans=16)
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder


def build_tiny_vit(adapters: AdapterConfig, preprocessing: PreprocessingConfig) -> SegmentAnythingModel:
    """LiteMedSAM's architecture: TinyViT at 256x256, embedding 256x64x64, [0, 1] input."""
    config = ModelConfig("tiny_vit", 256, adapters, preprocessing, imagenet_normalization=False)
    return SegmentAnythingModel(TinyViT(img_size=256, adapters=adapters), *_prompt_encoder_and_decoder(256, 64), config)


def build_vit_b(adapters: AdapterConfig, preprocessing: PreprocessingConfig) -> SegmentAnythingModel:
    """SAM ViT-B as in the SAMIHS paper: 1024x1024 input (a 512 slice upsampled 2x), embedding 64x64."""
    config = ModelConfig("vit_b", 1024, adapters, preprocessing, imagenet_normalization=True)
    encoder = ImageEncoderViT(img_size=1024, embed_dim=768, depth=12, num_heads=12, adapters=adapters)
    return SegmentAnythingModel(encoder, *_prompt_encoder_and_decoder(1024, 64), config)


MODEL_REGISTRY: Dict[str, Callable[[AdapterConfig, PreprocessingConfig], SegmentAnythingModel]] = {
    "tiny_vit": build_tiny_vit,
    "vit_b": build_vit_b,
}


def build_model(backbone: str, adapters: Optional[AdapterConfig] = None,
                preprocessing: PreprocessingConfig = BRAIN_WINDOW) -> SegmentAnythingModel:
    """A randomly initialised model of a registered backbone (weights are loaded separately)."""
    if backbone not in MODEL_REGISTRY:
        raise ValueError(f"Unknown model {backbone!r}: use one of {sorted(MODEL_REGISTRY)} or a checkpoint path.")
    chosen = DEFAULT_ADAPTERS[backbone] if adapters is None else adapters
    return MODEL_REGISTRY[backbone](chosen, preprocessing)


def _load_state(model: SegmentAnythingModel, state: Dict[str, torch.Tensor], source: str, strict_base: bool) -> None:
    """Load ``state``; adapters may be absent (they stay zero = identity), nothing else may."""
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise CheckpointError(f"{source} does not fit the {model.config.backbone} model: shape mismatch in "
                              f"{mismatched[:3]}{' ...' if len(mismatched) > 3 else ''}.")
    result = model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items() if k in own}, strict=False)
    adapter_names = set(adapter_parameter_names(model))
    missing = [k for k in result.missing_keys if k not in adapter_names]
    unexpected = [k for k in state if k not in own]
    if strict_base and (missing or unexpected):
        raise CheckpointError(f"{source} is not a {model.config.backbone} checkpoint: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}.")


def lite_medsam_base() -> Dict[str, torch.Tensor]:
    """The embedded LiteMedSAM state dict, SHA-256 verified."""
    return load_verified_weights(lite_medsam_weights_path(), LITE_MEDSAM_SHA256)


def _model_from_samihs_checkpoint(checkpoint: SamihsCheckpoint, path: Path) -> SegmentAnythingModel:
    model = _build_from_config(ModelConfig.from_dict(checkpoint.model_config))
    base = checkpoint.base
    if base is not None:
        if base.get("name") != "lite_medsam" or base.get("sha256") != LITE_MEDSAM_SHA256:
            raise CheckpointError(f"{path} applies to base weights {base}, which this install does not have.")
        _load_state(model, lite_medsam_base(), "LiteMedSAM base weights", strict_base=True)
    _load_state(model, {k: v.float() for k, v in checkpoint.tensors.items()}, str(path), strict_base=base is None)
    return model


def _build_from_config(config: ModelConfig) -> SegmentAnythingModel:
    model = build_model(config.backbone, config.adapters, config.preprocessing)
    model.config = config  # keeps every recorded field (e.g. trained_with_clicks)
    return model


def _backbone_of_state(state: Dict[str, torch.Tensor], path: Path) -> str:
    if "image_encoder.patch_embed.seq.0.c.weight" in state:
        return "tiny_vit"
    if "image_encoder.patch_embed.proj.weight" in state:
        return "vit_b"
    raise CheckpointError(f"{path}: cannot tell which backbone these weights are for.")


def load_model(spec: Union[str, Path] = DEFAULT_MODEL, device: str = "auto",
               preprocessing: Optional[PreprocessingConfig] = None) -> SegmentAnythingModel:
    """Build a ready-to-run model in eval mode.

    ``spec``: ``"lite-base"`` (LiteMedSAM as released: :data:`DEFAULT_MODEL`), ``"samihs"`` or ``"lite"``
    (the shipped fine-tuned SAMIHS checkpoints over LiteMedSAM), ``"vit_b"`` (random init: tests and
    timing only) or the path of a checkpoint: ours, a raw SAM/LiteMedSAM state dict (e.g. the
    official ``sam_vit_b_01ec64.pth``), or an authors' SAMIHS state dict. ``preprocessing``
    overrides the checkpoint's only when given.
    """
    text = str(spec)
    if text in SHIPPED_CHECKPOINTS:
        text = str(SHIPPED_CHECKPOINTS[text])
    if text == "lite-base":
        model = build_tiny_vit(AdapterConfig(positions=()), preprocessing or BRAIN_WINDOW)
        _load_state(model, lite_medsam_base(), "LiteMedSAM base weights", strict_base=True)
    elif text == "vit_b":
        model = build_vit_b(AdapterConfig(positions=()), preprocessing or BRAIN_WINDOW)
    else:  # a checkpoint file
        path = Path(text)
        if not path.exists() and path.suffix == "" and "/" not in text and "\\" not in text:
            raise ValueError(f"Unknown model {text!r}: use one of {MODEL_SPECS} or a checkpoint path.")
        loaded = load_any_checkpoint(path)
        if isinstance(loaded, SamihsCheckpoint):
            model = _model_from_samihs_checkpoint(loaded, path)
        else:
            state = convert_authors_samihs_state_dict(loaded) if looks_like_authors_samihs(loaded) else loaded
            backbone = _backbone_of_state(state, path)
            adapters = DEFAULT_ADAPTERS[backbone] if looks_like_authors_samihs(loaded) else AdapterConfig(positions=())
            model = build_model(backbone, adapters, preprocessing or BRAIN_WINDOW)
            _load_state(model, state, str(path), strict_base=True)
        if preprocessing is not None:
            model.config = dataclasses.replace(model.config, preprocessing=preprocessing)
    return model.to(resolve_device(device)).eval()


def trainable_state(model: SegmentAnythingModel) -> Dict[str, torch.Tensor]:
    """The parameters fine-tuning changes: PR adapters, prompt encoder and mask decoder."""
    adapters = set(adapter_parameter_names(model))
    return {
        name: tensor for name, tensor in model.state_dict().items()
        if name in adapters or name.startswith("prompt_encoder.") or name.startswith("mask_decoder.")
    }


def save_finetuned_checkpoint(model: SegmentAnythingModel, path: Path, provenance: Dict[str, object],
                              half_precision: bool = True) -> Path:
    """Save adapters + prompt encoder + decoder as a delta over the embedded LiteMedSAM base
    (``tiny_vit``), or the whole model (other backbones: their base is the user's file)."""
    if model.config.backbone == "tiny_vit":
        tensors = trainable_state(model)
        base = {"name": "lite_medsam", "sha256": LITE_MEDSAM_SHA256}
    else:
        tensors, base = model.state_dict(), None
    if half_precision:
        tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
    return write_samihs_checkpoint(path, tensors, model.config.to_dict(), base, provenance)


__all__ = ["MODEL_REGISTRY", "build_model", "load_model", "save_finetuned_checkpoint", "trainable_state",
           "sha256_file"]
