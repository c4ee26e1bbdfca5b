"""What describes a model, importable without torch: its adapters and the config saved in its
checkpoints (the app reads them to feed a model it runs from cached graphs)."""

from dataclasses import dataclass, field
from typing import Dict, Tuple

from SAMIHSLib.imaging.preprocessing import BRAIN_WINDOW, PreprocessingConfig

ADAPTER_POSITIONS = ("attn", "mlp")


@dataclass(frozen=True)
class AdapterConfig:
    """Which PR adapters an image encoder carries.

    ``positions`` is a subset of ``("attn", "mlp")`` (the paper's ablation switches); an empty
    tuple means no adapters. ``rank`` is the width of the shared low-rank basis.
    """

    positions: Tuple[str, ...] = ADAPTER_POSITIONS
    rank: int = 100

    def __post_init__(self) -> None:
        unknown = set(self.positions) - set(ADAPTER_POSITIONS)
        if unknown:
            raise ValueError(f"Unknown adapter position(s) {sorted(unknown)}; use {ADAPTER_POSITIONS}.")
        if self.rank < 1:
            raise ValueError(f"Adapter rank must be >= 1, got {self.rank}.")

    @property
    def enabled(self) -> bool:
        return len(self.positions) > 0

    def to_dict(self) -> Dict[str, object]:
        return {"positions": list(self.positions), "rank": self.rank}

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "AdapterConfig":
        return cls(positions=tuple(data.get("positions", ())), rank=int(data.get("rank", 100)))


NO_ADAPTERS = AdapterConfig(positions=(), rank=1)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and feed it correctly; saved in checkpoints."""

    backbone: str
    image_size: int
    adapters: AdapterConfig = NO_ADAPTERS
    preprocessing: PreprocessingConfig = field(default=BRAIN_WINDOW)
    imagenet_normalization: bool = False
    # True once fine-tuned on simulated clicks; the base LiteMedSAM only understands boxes.
    trained_with_clicks: bool = False

    def to_dict(self) -> Dict[str, object]:
        return {
            "backbone": self.backbone,
            "image_size": self.image_size,
            "adapters": self.adapters.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "imagenet_normalization": self.imagenet_normalization,
            "trained_with_clicks": self.trained_with_clicks,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "ModelConfig":
        return cls(
            # checkpoints written before the rename call the TinyViT backbone "lite"
            backbone={"lite": "tiny_vit"}.get(str(data["backbone"]), str(data["backbone"])),
            image_size=int(data["image_size"]),  # type: ignore[arg-type]
            adapters=AdapterConfig.from_dict(data.get("adapters", {"positions": []})),  # type: ignore[arg-type]
            preprocessing=PreprocessingConfig.from_dict(data["preprocessing"]),  # type: ignore[arg-type]
            imagenet_normalization=bool(data.get("imagenet_normalization", False)),
            trained_with_clicks=bool(data.get("trained_with_clicks", False)),
        )
