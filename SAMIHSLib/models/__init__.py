"""Model code: backbones, PR adapters, checkpoints and the builder registry."""

from SAMIHSLib.models.adapters import AdapterConfig, adapter_parameter_names
from SAMIHSLib.models.checkpoint import CheckpointError
from SAMIHSLib.models.registry import MODEL_REGISTRY, build_model, load_model, save_finetuned_checkpoint, trainable_state
from SAMIHSLib.models.sam import ModelConfig, SegmentAnythingModel

__all__ = [
    "AdapterConfig", "CheckpointError", "MODEL_REGISTRY", "ModelConfig", "SegmentAnythingModel",
    "adapter_parameter_names", "build_model", "load_model", "save_finetuned_checkpoint", "trainable_state",
]
