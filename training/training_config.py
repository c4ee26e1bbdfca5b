"""One JSON config per experiment: what is trained, on what data, how (``TrainingConfig``)."""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple


@dataclass
class TrainingConfig:
    """Everything one experiment needs; saved beside its outputs and inside the checkpoint."""

    name: str = "samihs_lite"
    base_model: str = "lite-base"
    adapter_positions: Tuple[str, ...] = ("attn", "mlp")
    adapter_rank: int = 32
    boundary_loss: str = "paper"
    bce_weight: float = 0.5
    # The paper's boundary weight g is 0 for a bleed 1-2 px wide (no gradient): 0.5 floors it at the
    # soft Jaccard loss (training/losses.py); 0 = the paper's term as written.
    boundary_weight_floor: float = 0.0
    learning_rate: float = 5e-4
    batch_size: int = 2
    epochs: int = 200
    lr_step_epochs: int = 50
    lr_gamma: float = 0.5
    seed: int = 0
    datasets: List[Dict[str, str]] = field(default_factory=list)
    phantom_cases: int = 0
    augment: bool = True
    box_probability: float = 0.0
    # A box around the click's hyperdense region, as the app's intensity-guided click handling
    # gives a click-trained model at inference (with the click).
    region_box_probability: float = 0.0
    extra_click_probability: float = 0.3
    max_steps: Optional[int] = None
    # Stop (and save) once this much wall time has passed: for a rented machine's time limit.
    # The steps actually done are in train_log.csv and the checkpoint's config.
    max_minutes: Optional[float] = None
    device: str = "auto"
    output_dir: str = "runs/samihs_lite"
    cache_embeddings: bool = False
    augmented_copies: int = 4
    # Staged training (with cache_embeddings): the last N stages of a TinyViT encoder train their PR
    # adapters on the cached output of the frozen stages before them; 0 = the whole encoder is frozen.
    trained_encoder_stages: int = 0
    # Iterative click training (SAM, RITM): after the first click, 0..N corrective clicks at the
    # largest error of the model's own answer, each with that answer fed back as the mask prompt.
    corrective_clicks: int = 0
    # The first click is a random interior point of a bleed; with this chance its deepest point.
    deepest_click_probability: float = 0.0
    # Matrix precision of training on CPU: "auto" = bf16 autocast where the CPU has native bf16
    # (AVX512-BF16 / AMX), else fp32; parameters and optimizer state stay fp32 either way.
    cpu_autocast: str = "fp32"
    # Bleed pasting (training/bleed_paste.py): the chance that a training image gets 1..max_pasted_bleeds
    # real bleeds of other patients (donors of the same fold only in fold training) at plausible places.
    paste_probability: float = 0.0
    max_pasted_bleeds: int = 2
    # Target the connected bleed under the click (what a click asks for) instead of all bleed on the slice.
    clicked_bleed_target: bool = False
    # Draw subtype groups in proportion to n ** (1 - subtype_balance) (training/subtype_sampling.py):
    # 0 = as the data has them, 1 = every subtype equally often.
    subtype_balance: float = 0.0
    # The chance that each bleed of a training image is redrawn as a subacute or chronic one
    # (training/bleed_age.py), so that hypodense collections are blood to the model too.
    aged_bleed_probability: float = 0.0
    # Scale augmentation (training/augment.py: zoom_in): the chance that a training image is a crop
    # enlarged back to the slice's size by 1..max_zoom (pixel size divided alike), as a zoom onto a small
    # bleed would show it; 0 keeps every image at its own scale.
    zoom_probability: float = 0.0
    max_zoom: float = 1.0
    # Feed slices k-1, k, k+1 as the encoder's three channels (PreprocessingConfig.neighbour_channels),
    # in training and in the model it saves; False feeds slice k three times, as LiteMedSAM was trained.
    neighbour_channels: bool = False

    @classmethod
    def from_json(cls, path: Path) -> "TrainingConfig":
        data = json.loads(Path(path).read_text())
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown training option(s) in {path}: {sorted(unknown)}")
        if data.get("cpu_autocast", "fp32") not in ("auto", "bf16", "fp32"):
            raise ValueError(f"cpu_autocast in {path} must be auto, bf16 or fp32, not {data['cpu_autocast']!r}.")
        for key in ("subtype_balance", "aged_bleed_probability", "boundary_weight_floor", "zoom_probability"):
            if not 0.0 <= float(data.get(key, 0.0)) <= 1.0:
                raise ValueError(f"{key} in {path} must be between 0 and 1, not {data[key]!r}.")
        if float(data.get("max_zoom", 1.0)) < 1.0:
            raise ValueError(f"max_zoom in {path} must be at least 1, not {data['max_zoom']!r}.")
        if not isinstance(data.get("neighbour_channels", False), bool):
            raise ValueError(f"neighbour_channels in {path} must be true or false, not {data['neighbour_channels']!r}.")
        if data.get("neighbour_channels") and float(data.get("zoom_probability", 0.0)) > 0:
            raise ValueError(f"{path}: zoom_probability cannot be combined with neighbour_channels "
                             "(the zoom crops one slice).")
        if "adapter_positions" in data:
            data["adapter_positions"] = tuple(data["adapter_positions"])
        return cls(**data)

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)
