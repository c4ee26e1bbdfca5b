"""What the app needs of a model it runs from cached ONNX graphs, without torch: its config, the
decoder's mask grid and the identities the batch manifest and the bf16 table name it by."""

from dataclasses import dataclass
from typing import Dict

from SAMIHSLib.models.config import ModelConfig


@dataclass(frozen=True)
class ModelSummary:
    """A loaded model in a few fields (the predictor reads nothing else of a model it does not run)."""

    config: ModelConfig
    lowres_mask_size: int
    weights_sha256: str  # SHA-256 of the weights as loaded (adapters included): the batch manifest's identity
    weights_identity: str  # weights + config (``engines.export.weights_identity``): the bf16 table's key

    @classmethod
    def of(cls, model) -> "ModelSummary":
        """The summary of a loaded ``SegmentAnythingModel`` (hashes its weights once: ~40 ms)."""
        from SAMIHSLib.models.checkpoint import sha256_tensors, weights_identity

        weights_sha256 = sha256_tensors(model.state_dict())
        return cls(model.config, int(model.lowres_mask_size), weights_sha256, weights_identity(model, weights_sha256))

    def to_dict(self) -> Dict[str, object]:
        return {"config": self.config.to_dict(), "lowres_mask_size": self.lowres_mask_size,
                "weights_sha256": self.weights_sha256, "weights_identity": self.weights_identity}

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "ModelSummary":
        return cls(ModelConfig.from_dict(data["config"]), int(data["lowres_mask_size"]),  # type: ignore[arg-type]
                   str(data["weights_sha256"]), str(data["weights_identity"]))
