"""Training the automatic bleed detector (:mod:`SAMIHSLib.models.bleed_detector`) on whole head CTs.

Every slice of every training volume is windowed and resized once (what the detector reads at
run time, :func:`SAMIHSLib.volume.bleed_detection.window_slices`). A step draws half its slices
from those with bleed and half from the rest (bleed-free heads and the bleed heads' other slices),
flips them at random and shifts their HU a little, and lowers BCE + soft Dice against the bleed
fraction of each input pixel. Adam with a cosine learning rate; bf16 autocast where the CPU has
native bf16 (2x faster here, as the staged fine-tuning).
"""

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from SAMIHSLib.models.bleed_detector import BleedDetectorNet, DetectorConfig
from SAMIHSLib.volume.bleed_detection import mirror_slices, neighbour_offset, network_input, window_slices

from .trainer import cpu_autocast_enabled


@dataclass(frozen=True)
class DetectorTrainingConfig:
    """The detector's recipe (``training/experiments/bleed_detector.json``)."""

    steps: int = 2000
    batch_size: int = 16
    patch_side: int = 128  # training crops (the network is fully convolutional): 4x more slices per second
    bleed_fraction: float = 0.5  # share of each batch drawn from slices with bleed
    # How a bleed crop is drawn: "slice" (any slice with bleed, centred on any of its bleed pixels:
    # large bleeds fill most crops) or "bleed" (any 3D bleed alike, then one of its slices and pixels:
    # a 1 mL bleed is seen as often as a 100 mL one).
    positive_sampling: str = "slice"
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    hu_shift: float = 4.0  # uniform +-HU added to a whole input: scanners differ in calibration
    seed: int = 0
    cpu_autocast: str = "auto"  # auto (bf16 where native) / bf16 / fp32


@dataclass
class DetectorVolume:
    """One training CT as the detector reads it: windowed slices and each pixel's bleed fraction."""

    name: str
    slices: torch.Tensor  # (K, S, S) float16 in [0, 1]
    bleed_fraction: torch.Tensor  # (K, S, S) float16
    offset: int
    mirrored: Optional[torch.Tensor] = None  # (K, S, S) float16: the slices mirrored, for a network that reads them

    @property
    def bleed_slices(self) -> List[int]:
        return [k for k in range(self.bleed_fraction.shape[0]) if float(self.bleed_fraction[k].max()) > 0]


def detector_volume(name: str, image_hu: np.ndarray, mask: np.ndarray, spacing_zyx: Sequence[float],
                    config: DetectorConfig) -> DetectorVolume:
    """A whole CT (HU and bleed mask, k, j, i) as detector input and target."""
    side = config.input_side
    target = F.interpolate(torch.from_numpy(mask.astype(np.float32))[:, None], size=(side, side), mode="area")
    windowed = window_slices(image_hu, config)
    mirrored = mirror_slices(windowed, image_hu).half() if config.mirror_channel else None
    return DetectorVolume(name, windowed.half(), target[:, 0].half(), neighbour_offset(float(spacing_zyx[0])), mirrored)


def _batch(volumes: Sequence[DetectorVolume], positives: Sequence[tuple], others: Sequence[tuple],
           config: DetectorConfig, recipe: DetectorTrainingConfig, rng: np.random.Generator):
    """One batch: ``positives`` are (volume, slice, bleed pixels to centre on or None) to draw the
    bleed share from, ``others`` (volume, slice, None) the rest."""
    wanted = recipe.batch_size
    bleed_count = min(len(positives), int(round(wanted * recipe.bleed_fraction)))
    picks = [positives[i] for i in rng.integers(len(positives), size=bleed_count)] if bleed_count else []
    picks += [others[i] for i in rng.integers(len(others), size=wanted - bleed_count)]
    inputs, targets = [], []
    for volume_index, k, centres in picks:
        volume = volumes[volume_index]
        image = network_input(volume.slices, volume.mirrored, [k], volume.offset, config)[0].float()
        target = volume.bleed_fraction[k].float()[None]
        image, target = _crop(image, target, recipe.patch_side, rng, centres, config.neighbours)
        if rng.random() < 0.5:
            image, target = image.flip(-1), target.flip(-1)
        if rng.random() < 0.5:
            image, target = image.flip(-2), target.flip(-2)
        shift = rng.uniform(-recipe.hu_shift, recipe.hu_shift) / (config.window_hu[1] - config.window_hu[0])
        inputs.append((image + shift).clamp(0, 1))
        targets.append(target)
    return torch.stack(inputs), torch.stack(targets)


def bleed_positives(volumes: Sequence[DetectorVolume], sampling: str) -> List[tuple]:
    """The draws for bleed crops: every slice with bleed ("slice"), or every (3D bleed, slice of it)
    repeated so that each bleed is drawn as often as any other ("bleed"; its pixels on that slice
    are the crop centres)."""
    if sampling == "slice":
        return [(v, k, None) for v, volume in enumerate(volumes) for k in volume.bleed_slices]
    if sampling != "bleed":
        raise ValueError(f"positive_sampling must be 'slice' or 'bleed', not {sampling!r}.")
    from scipy import ndimage as ndi

    per_bleed: List[List[tuple]] = []
    for v, volume in enumerate(volumes):
        labels, count = ndi.label(volume.bleed_fraction.float().numpy() > 0, structure=np.ones((3, 3, 3), bool))
        for label in range(1, count + 1):
            component = torch.from_numpy(labels == label)
            per_bleed.append([(v, k, torch.nonzero(component[k])) for k in range(component.shape[0])
                              if bool(component[k].any())])
    longest = max((len(draws) for draws in per_bleed), default=0)
    # each bleed's slices repeated up to the longest bleed's count: a uniform draw picks bleeds alike
    return [draws[i % len(draws)] for draws in per_bleed for i in range(longest)]


def _crop(image: torch.Tensor, target: torch.Tensor, side: int, rng: np.random.Generator,
          centres: Optional[torch.Tensor] = None, own_channel: int = 1):
    """A ``side`` crop: around one of ``centres`` (pixels) if given, else a random bleed pixel where
    the slice has one (nnU-Net's foreground oversampling), anywhere inside the head of the slice
    itself (channel ``own_channel``) otherwise."""
    full = image.shape[-1]
    if side >= full:
        return image, target
    bleed = centres if centres is not None else torch.nonzero(target[0] > 0)
    head = bleed if len(bleed) else torch.nonzero(image[own_channel] > 0.1)
    if len(head):
        row, column = (int(v) for v in head[rng.integers(len(head))])
    else:
        row, column = full // 2, full // 2
    jitter = side // 4
    top = int(np.clip(row - side // 2 + rng.integers(-jitter, jitter + 1), 0, full - side))
    left = int(np.clip(column - side // 2 + rng.integers(-jitter, jitter + 1), 0, full - side))
    return image[:, top:top + side, left:left + side], target[:, top:top + side, left:left + side]


def detector_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice over the batch (one Dice: most slices hold no bleed)."""
    probability = torch.sigmoid(logits)
    overlap = (probability * target).sum()
    soft_dice = 1 - (2 * overlap + 1) / (probability.sum() + target.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + soft_dice


def train_detector(volumes: Sequence[DetectorVolume], config: DetectorConfig, recipe: DetectorTrainingConfig,
                   log: Optional[Callable[[Dict[str, float]], None]] = None,
                   should_stop: Optional[Callable[[], bool]] = None) -> BleedDetectorNet:
    """A detector trained on ``volumes`` (all their slices) by ``recipe``; ``log`` gets one row
    per 20 steps (step, loss, learning rate, seconds)."""
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    positives = bleed_positives(volumes, recipe.positive_sampling)
    bleed = {(v, k) for v, volume in enumerate(volumes) for k in volume.bleed_slices}
    others = [(v, k, None) for v, volume in enumerate(volumes) for k in range(volume.slices.shape[0])
              if (v, k) not in bleed]
    if not others:
        raise ValueError("The detector needs slices without bleed to learn what is not blood.")
    network = BleedDetectorNet(config).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    autocast = cpu_autocast_enabled(recipe.cpu_autocast)
    started, running = time.perf_counter(), []
    for step in range(recipe.steps):
        if should_stop is not None and should_stop():
            break
        rate = recipe.learning_rate * 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
        for group in optimizer.param_groups:
            group["lr"] = rate
        inputs, targets = _batch(volumes, positives, others, config, recipe, rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = network(inputs)
        loss = detector_loss(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.append(loss.item())
        if log is not None and (step + 1) % 20 == 0:
            log({"step": step + 1, "loss": float(np.mean(running)), "learning_rate": rate,
                 "seconds": time.perf_counter() - started})
            running = []
    return network.eval()


def recipe_dict(config: DetectorConfig, recipe: DetectorTrainingConfig) -> Dict[str, object]:
    """Network and recipe in one JSON-able dict (the checkpoint's provenance)."""
    return {"network": config.to_dict(), "training": asdict(recipe)}
