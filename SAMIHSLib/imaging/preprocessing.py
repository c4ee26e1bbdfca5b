"""Intensity preprocessing of CT slices in Hounsfield units (HU) into model input.

Preprocessing is part of a model's configuration (it is saved in our checkpoints), so a model
is always fed the way it was trained. The source array is never modified.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import numpy as np
from scipy import ndimage as ndi

PREPROCESSING_KINDS = ("window", "percentile")


@dataclass(frozen=True)
class PreprocessingConfig:
    """How HU become [0, 1] intensities.

    ``kind="window"``: a CT window (level/width in HU; W80/L40 is the brain window).
    ``kind="percentile"``: the SAMIHS paper's clip to the 0.5/99.5 percentiles of the
    foreground (HU > ``foreground_hu``), then min-max.
    """

    kind: str = "window"
    window_level_hu: float = 40.0
    window_width_hu: float = 80.0
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    foreground_hu: float = -500.0
    # Slices k-1, k, k+1 as the encoder's three channels (a slice at the scan's edge stands in for its
    # missing neighbour); False feeds slice k three times, as LiteMedSAM was trained.
    neighbour_channels: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PREPROCESSING_KINDS:
            raise ValueError(f"Unknown preprocessing kind {self.kind!r}; use one of {PREPROCESSING_KINDS}.")
        if not isinstance(self.neighbour_channels, bool):
            raise ValueError(f"neighbour_channels must be true or false, not {self.neighbour_channels!r}.")
        if self.kind == "window" and self.window_width_hu <= 0:
            raise ValueError(f"Window width must be > 0 HU, got {self.window_width_hu}.")

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "PreprocessingConfig":
        return cls(**data)  # type: ignore[arg-type]

    def cache_key(self) -> tuple:
        """A hashable key: embeddings computed under different preprocessing never mix."""
        return tuple(sorted(self.to_dict().items()))


BRAIN_WINDOW = PreprocessingConfig(kind="window", window_level_hu=40.0, window_width_hu=80.0)


def normalize_slice(slice_hu: np.ndarray, config: PreprocessingConfig) -> np.ndarray:
    """Map a 2D slice in HU to float32 intensities in [0, 1] (a new array)."""
    data = np.asarray(slice_hu, dtype=np.float32)
    if config.kind == "window":
        low = config.window_level_hu - config.window_width_hu / 2.0
        return np.clip((data - low) / config.window_width_hu, 0.0, 1.0)
    foreground = data[data > config.foreground_hu]
    if foreground.size == 0:
        return np.zeros_like(data)
    low, high = np.percentile(foreground, [config.lower_percentile, config.upper_percentile])
    if high <= low:
        return np.zeros_like(data)
    return (np.clip(data, low, high) - low) / (high - low)


def neighbour_indices(index: int, count: int) -> Tuple[int, int, int]:
    """Slices k-1, k, k+1 of a scan of ``count`` slices, the edge slice standing in for a missing one:
    the one rule for the neighbour channels in training and in the app."""
    return max(index - 1, 0), index, min(index + 1, count - 1)


def encoder_input(volume_hu: np.ndarray, index: int, config: PreprocessingConfig) -> np.ndarray:
    """What the encoder is fed for slice ``index`` of a (k, rows, columns) volume: its [0, 1] intensities
    (rows, columns), or with ``neighbour_channels`` those of :func:`neighbour_indices` (3, rows, columns),
    each normalised alone."""
    if not config.neighbour_channels:
        return normalize_slice(volume_hu[index], config)
    return np.stack([normalize_slice(volume_hu[k], config) for k in neighbour_indices(index, volume_hu.shape[0])])


DENOISE_MEDIAN_PX = 3


def denoise_slice(slice_hu: np.ndarray) -> np.ndarray:
    """A 3x3 median-filtered float32 copy of a slice in HU: scanner noise (~4-10 HU) would
    otherwise scatter voxels in and out of the narrow blood HU band."""
    return ndi.median_filter(np.asarray(slice_hu, dtype=np.float32), size=DENOISE_MEDIAN_PX)


def denoised_value_at(slice_hu: np.ndarray, row: int, column: int) -> float:
    """``denoise_slice(slice_hu)[row, column]`` from that pixel's neighbourhood alone (the same
    median and edge rule: the crop keeps the slice's own edges), for one pixel without the whole slice."""
    reach = DENOISE_MEDIAN_PX // 2
    top, left = max(0, row - reach), max(0, column - reach)
    crop = np.asarray(slice_hu[top:row + reach + 1, left:column + reach + 1])
    return float(denoise_slice(crop)[row - top, column - left])
