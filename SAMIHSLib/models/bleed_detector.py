"""The automatic bleed detector: a small 2.5D U-Net that reads three neighbouring axial slices
(k-1, k, k+1) in one HU window at half resolution (optionally also slice k mirrored across the
head's long axis) and returns a per-pixel bleed logit for slice k.

It is the network behind ``samihs batch --prompts auto``: small enough to run on every slice of a
whole head CT in about a second on 2 CPU cores, and trained by patient folds on whole CTs with and
without bleed (``python -m training detectorcv``). Inputs and thresholds are in
:mod:`SAMIHSLib.volume.bleed_detection`.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class DetectorConfig:
    """What the network reads and how wide it is."""

    window_hu: Tuple[float, float] = (-20.0, 120.0)  # blood, brain and fluid; bone saturates at the top
    input_side: int = 256  # pixels per side after downsampling (512 / 2 for the dataset's CTs)
    neighbours: int = 1  # slices on each side: 1 gives the channels k-1, k, k+1
    widths: Tuple[int, ...] = (16, 32, 64, 128)
    # One more channel: slice k mirrored across the head's long axis, so that the network can tell a
    # bleed (seldom mirrored) from the falx and cortex that read as blood on both sides alike.
    mirror_channel: bool = False

    @property
    def in_channels(self) -> int:
        return 2 * self.neighbours + 1 + int(self.mirror_channel)

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, object]) -> "DetectorConfig":
        mirror = values.get("mirror_channel", False)  # absent from detectors trained before the option
        if not isinstance(mirror, bool):
            raise ValueError(f"mirror_channel must be true or false, not {mirror!r}.")
        return cls(window_hu=tuple(values["window_hu"]), input_side=int(values["input_side"]),
                   neighbours=int(values["neighbours"]), widths=tuple(values["widths"]), mirror_channel=mirror)


class _DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class BleedDetectorNet(nn.Module):
    """U-Net: ``(B, in_channels, S, S)`` windowed slices in [0, 1] -> ``(B, 1, S, S)`` bleed logits."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        self.down = nn.ModuleList()
        channels = config.in_channels
        for width in widths:
            self.down.append(_DoubleConv(channels, width))
            channels = width
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(channels, width, 2, stride=2))
            self.merge.append(_DoubleConv(2 * width, width))
            channels = width
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        skips = []
        features = slices
        for index, block in enumerate(self.down):
            if index:
                features = F.max_pool2d(features, 2)
            features = block(features)
            skips.append(features)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            features = merge(torch.cat([up(features), skip], dim=1))
        return self.head(features)
