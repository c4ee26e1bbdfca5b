"""Model code: backbones, PR adapters, checkpoints and the builder registry.

Importing this package does not import torch: ``config`` (what describes a model), ``files``
(where its weights are) and ``summary`` need none, and the names below that do are loaded when
first used (PEP 562), so a model run from cached graphs starts without torch.
"""

import importlib

_LAZY = {
    "AdapterConfig": "config", "ModelConfig": "config", "CheckpointError": "files",
    "adapter_parameter_names": "adapters", "SegmentAnythingModel": "sam",
    "MODEL_REGISTRY": "registry", "build_model": "registry", "load_model": "registry",
    "save_finetuned_checkpoint": "registry", "trainable_state": "registry",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"SAMIHSLib.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
