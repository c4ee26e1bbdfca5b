"""Automatic bleed detection on a whole head CT: the detector network's probability per voxel,
then 3D candidate regions that a reader can review, each with its score, slices and mL.

The input of slice k is the slices k-1, k, k+1 (neighbours taken about 5 mm away, whatever the
slice thickness) in the network's HU window, resized to its input side. Its answer is resized back
to the slice grid. A detector trained with ``mirror_channel`` also reads slice k mirrored across
the head's long axis. A region is a 3D connected set of voxels above ``pixel_threshold``; it is kept
when its highest probability (its score) reaches ``region_threshold`` and it holds at least
``min_region_ml``. The thresholds are chosen on training folds (``python -m training detectorcv``)
and travel in the checkpoint. A volume with no kept region is a result: "no bleed found", with the
highest score seen.
"""

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F

from SAMIHSLib.interaction.detected_regions import REGION_STRUCTURE
from SAMIHSLib.io.atomic_write import atomic_output
from SAMIHSLib.models.bleed_detector import BleedDetectorNet, DetectorConfig
from SAMIHSLib.models.files import CheckpointError
from SAMIHSLib.progress import ProgressCallback
from SAMIHSLib.volume.head_axis import head_axes

DETECTOR_FORMAT = "samihs-bleed-detector/1"
NEIGHBOUR_DISTANCE_MM = 5.0  # the training CTs' slice spacing: neighbours are read this far away
SLICES_PER_BATCH = 8


class DetectionCancelled(RuntimeError):
    """The user stopped the detection."""


@dataclass(frozen=True)
class DetectionThresholds:
    """When a voxel belongs to a candidate region, and when a region is kept."""

    pixel_threshold: float = 0.5
    region_threshold: float = 0.9
    min_region_ml: float = 0.1

    def label(self) -> str:
        return f"pixel>{self.pixel_threshold:g}, score>={self.region_threshold:g}, >={self.min_region_ml:g} mL"


@dataclass
class DetectedRegion:
    """One suspected bleed: 3D voxels of the stack (k, j, i), its score and where it lies."""

    mask: np.ndarray = field(repr=False)
    score: float
    volume_ml: float
    first_slice: int
    last_slice: int

    def describe(self) -> str:
        """Where it is and how sure the detector is, for a report: "slices 3-7, 6.0 mL, score 0.998"."""
        return f"slices {self.first_slice}-{self.last_slice}, {self.volume_ml:.1f} mL, score {self.score:.3f}"

    def summary(self) -> Dict[str, object]:
        """What a report lists for the reader to review: slices (stack order), mL, score."""
        return {"slices": [self.first_slice, self.last_slice], "volume_ml": round(self.volume_ml, 2),
                "score": round(self.score, 3)}


def neighbour_offset(slice_spacing_mm: float) -> int:
    """Slices between k and its neighbour channel: about 5 mm away, at least one slice."""
    return max(1, int(round(NEIGHBOUR_DISTANCE_MM / max(slice_spacing_mm, 1e-3))))


def window_slices(volume_hu: np.ndarray, config: DetectorConfig) -> torch.Tensor:
    """(K, S, S) float32 in [0, 1]: every axial slice of a (k, j, i) HU volume in the network's
    window, resized (area average) to its input side."""
    low, high = config.window_hu
    windowed = (np.clip(volume_hu.astype(np.float32), low, high) - low) / (high - low)
    tensor = torch.from_numpy(windowed)[:, None]
    return F.interpolate(tensor, size=(config.input_side, config.input_side), mode="area")[:, 0]


def neighbour_indices(indices: Sequence[int], offset: int, neighbours: int, count: int) -> List[List[int]]:
    """For each k, the slices k-n*offset .. k+n*offset of a ``count``-slice volume (clamped at the ends)."""
    return [[min(max(k + step * offset, 0), count - 1) for step in range(-neighbours, neighbours + 1)]
            for k in indices]


def stack_neighbours(slices: torch.Tensor, indices: Sequence[int], offset: int, neighbours: int) -> torch.Tensor:
    """(len(indices), 2n+1, S, S): slices k-n*offset .. k+n*offset for each k (clamped at the ends)."""
    return slices[torch.tensor(neighbour_indices(indices, offset, neighbours, slices.shape[0]))]


def mirror_slices(windowed: torch.Tensor, volume_hu: np.ndarray) -> torch.Tensor:
    """(K, S, S): each windowed slice (:func:`window_slices` of ``volume_hu``) reflected across the
    head's long axis (found on the HU slice), so that a pixel meets the other side of the head; a
    slice with too little head is reflected across its middle column."""
    count, side = windowed.shape[0], windowed.shape[-1]
    if not count:
        return windowed.clone()
    scale = np.array([side / volume_hu.shape[1], side / volume_hu.shape[2]])
    pixel = torch.arange(side, dtype=torch.float64)
    rows, columns = torch.meshgrid(pixel, pixel, indexing="ij")
    grids = []
    for axis in head_axes(volume_hu):
        if axis is None:
            centre, direction = np.array([(side - 1) / 2, (side - 1) / 2]), np.array([1.0, 0.0])
        else:
            # the same point and direction on the resized grid (area resize: pixel centres scale about -0.5)
            centre = (np.array(axis[:2]) + 0.5) * scale - 0.5
            direction = axis[2] * scale
            direction = direction / np.linalg.norm(direction)
        reflect = 2 * np.outer(direction, direction) - np.eye(2)
        source_row = centre[0] + reflect[0, 0] * (rows - centre[0]) + reflect[0, 1] * (columns - centre[1])
        source_column = centre[1] + reflect[1, 0] * (rows - centre[0]) + reflect[1, 1] * (columns - centre[1])
        # grid_sample reads (x = column, y = row) in [-1, 1] at pixel centres (align_corners=False)
        grids.append(torch.stack([(2 * source_column + 1) / side - 1, (2 * source_row + 1) / side - 1], dim=-1))
    grid = torch.stack(grids).float()  # sampled in float32 whatever the slices' type (CPU grid_sample)
    mirrored = F.grid_sample(windowed[:, None].float(), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
    return mirrored[:, 0].to(windowed.dtype)


def network_input(slices: torch.Tensor, mirrored: Optional[torch.Tensor], indices: Sequence[int], offset: int,
                  config: DetectorConfig) -> torch.Tensor:
    """(len(indices), in_channels, S, S): the neighbours of each slice k (:func:`stack_neighbours`),
    then slice k mirrored (:func:`mirror_slices`) when the network reads it."""
    stacked = stack_neighbours(slices, indices, offset, config.neighbours)
    if not config.mirror_channel:
        return stacked
    if mirrored is None:
        raise ValueError("This detector reads each slice mirrored across the head's long axis; none was given.")
    return torch.cat([stacked, mirrored[torch.tensor(list(indices))][:, None]], dim=1)


class BleedDetector:
    """A trained detector with its thresholds: a head CT in HU -> bleed probabilities -> regions."""

    def __init__(self, network: BleedDetectorNet, thresholds: DetectionThresholds,
                 provenance: Optional[Dict[str, object]] = None) -> None:
        self.network = network.eval()
        self.thresholds = thresholds
        self.provenance = dict(provenance or {})

    @property
    def config(self) -> DetectorConfig:
        return self.network.config

    def probabilities(self, volume_hu: np.ndarray, spacing_zyx: Sequence[float],
                      cancel: Optional[threading.Event] = None,
                      progress: Optional[ProgressCallback] = None) -> np.ndarray:
        """(k, j, i) float32 bleed probability of every voxel of a HU volume (k, j, i)."""
        if volume_hu.ndim != 3 or min(volume_hu.shape) < 1:
            raise ValueError(f"A (slices, rows, columns) volume is needed, got shape {volume_hu.shape}.")
        windowed = window_slices(volume_hu, self.config)
        mirrored = mirror_slices(windowed, volume_hu) if self.config.mirror_channel else None
        logits = self.slice_logits(windowed, neighbour_offset(float(spacing_zyx[0])), cancel, progress, mirrored)
        return logits_to_probability(logits, volume_hu.shape[1:])

    def slice_logits(self, slices: torch.Tensor, offset: int, cancel: Optional[threading.Event] = None,
                     progress: Optional[ProgressCallback] = None,
                     mirrored: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(K, S, S) logits at the network's side for windowed slices (K, S, S) (:func:`window_slices`)
        whose neighbours lie ``offset`` slices away (and their mirror images, :func:`mirror_slices`,
        for a detector that reads them)."""
        total = slices.shape[0]
        logits = []
        with torch.inference_mode():
            for start in range(0, total, SLICES_PER_BATCH):
                if cancel is not None and cancel.is_set():
                    raise DetectionCancelled("Bleed detection cancelled.")
                if progress is not None:
                    progress(start, total, f"detecting bleeds: slice {start + 1} of {total}")
                indices = range(start, min(start + SLICES_PER_BATCH, total))
                logits.append(self.network(network_input(slices, mirrored, indices, offset, self.config))[:, 0])
        return torch.cat(logits)

    def regions(self, probability: np.ndarray, spacing_zyx: Sequence[float]) -> List[DetectedRegion]:
        """The kept regions of a probability volume, highest score first."""
        return detect_regions(probability, spacing_zyx, self.thresholds)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the network, its thresholds and provenance (atomic)."""
        payload = {"format": DETECTOR_FORMAT, "config": self.config.to_dict(),
                   "thresholds": asdict(self.thresholds), "provenance": self.provenance,
                   "state_dict": {name: value.detach().cpu() for name, value in self.network.state_dict().items()}}
        with atomic_output(path) as temporary:
            torch.save(payload, temporary)
        return Path(path)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "BleedDetector":
        """A detector written by :meth:`save`; a clear error for anything else."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"Bleed detector not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a damaged file
            raise CheckpointError(f"Cannot read the bleed detector {path}: {error}") from error
        if not isinstance(payload, dict) or payload.get("format") != DETECTOR_FORMAT:
            raise CheckpointError(f"{path} is not a SAMIHS bleed detector ({DETECTOR_FORMAT}).")
        network = BleedDetectorNet(DetectorConfig.from_dict(payload["config"]))
        try:
            network.load_state_dict(payload["state_dict"])
        except RuntimeError as error:
            raise CheckpointError(f"The bleed detector {path} does not match its network: {error}") from error
        return cls(network, DetectionThresholds(**payload["thresholds"]), payload.get("provenance"))


class DetectorEvidence:
    """The detector's probabilities on one volume, computed for the slices asked and remembered:
    what a click session joins to its answers (:class:`~SAMIHSLib.interaction.detected_regions.BleedEvidence`).
    Only those slices and their neighbours are windowed (a thin-slice CT's whole volume in float32
    would be hundreds of MB)."""

    def __init__(self, detector: BleedDetector, volume_hu: np.ndarray, spacing_zyx: Sequence[float]) -> None:
        self.detector = detector
        self.volume_hu = volume_hu
        self.offset = neighbour_offset(float(spacing_zyx[0]))
        self._mirrored: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._slices: Dict[int, torch.Tensor] = {}  # logits at the network's side (a quarter of the slice's size)

    @property
    def computed_slices(self) -> List[int]:
        """The slices whose probabilities have been computed so far."""
        return sorted(self._slices)

    def _inputs(self, indices: Sequence[int]) -> torch.Tensor:
        """The network's input for slices ``indices`` (:func:`network_input`)."""
        config = self.detector.config
        if config.mirror_channel:  # each slice's mirror needs its head's axis: the whole volume, once
            if self._mirrored is None:
                windowed = window_slices(self.volume_hu, config)
                self._mirrored = windowed, mirror_slices(windowed, self.volume_hu)
            return network_input(self._mirrored[0], self._mirrored[1], indices, self.offset, config)
        rows = neighbour_indices(indices, self.offset, config.neighbours, self.volume_hu.shape[0])
        needed = sorted({k for row in rows for k in row})
        position = {k: number for number, k in enumerate(needed)}
        windowed = window_slices(self.volume_hu[needed], config)
        return windowed[torch.tensor([[position[k] for k in row] for row in rows])]

    def probability(self, slices: Sequence[int]) -> np.ndarray:
        """(len(slices), rows, columns) float32 bleed probabilities of those slices."""
        missing = [int(k) for k in slices if int(k) not in self._slices]
        for k in missing:  # one slice at a time: 60 MB of activations, not 300 as in batches of 8, as fast
            with torch.inference_mode():
                self._slices[k] = self.detector.network(self._inputs([k]))[0, 0]
        if not len(slices):
            return np.zeros((0,) + self.volume_hu.shape[1:], np.float32)
        return logits_to_probability(torch.stack([self._slices[int(k)] for k in slices]), self.volume_hu.shape[1:])


def logits_to_probability(logits: torch.Tensor, shape: Sequence[int]) -> np.ndarray:
    """(K, S, S) logits -> (K, rows, columns) float32 probabilities on the slice grid."""
    full = F.interpolate(logits.float()[:, None], size=tuple(shape), mode="bilinear", align_corners=False)
    return torch.sigmoid(full[:, 0]).numpy()


def candidate_regions(probability: np.ndarray, spacing_zyx: Sequence[float],
                      pixel_threshold: float) -> Tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """3D components above ``pixel_threshold``: labels, count, each one's score (highest
    probability) and volume (mL), indexed from label 1."""
    labels, count = ndi.label(probability > pixel_threshold, structure=REGION_STRUCTURE)
    if not count:
        return labels, 0, np.zeros(0), np.zeros(0)
    indices = np.arange(1, count + 1)
    scores = np.asarray(ndi.maximum(probability, labels, indices), dtype=float)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    volumes = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_ml
    return labels, count, scores, volumes


def detect_regions(probability: np.ndarray, spacing_zyx: Sequence[float],
                   thresholds: DetectionThresholds) -> List[DetectedRegion]:
    """Regions of a (k, j, i) probability volume that pass ``thresholds``, highest score first."""
    labels, count, scores, volumes = candidate_regions(probability, spacing_zyx, thresholds.pixel_threshold)
    regions = []
    boxes = ndi.find_objects(labels)
    for number in range(1, count + 1):
        score, volume = float(scores[number - 1]), float(volumes[number - 1])
        if score < thresholds.region_threshold or volume < thresholds.min_region_ml:
            continue
        box = boxes[number - 1]
        mask = np.zeros(labels.shape, bool)
        mask[box] = labels[box] == number
        regions.append(DetectedRegion(mask, score, volume, box[0].start, box[0].stop - 1))
    return sorted(regions, key=lambda region: -region.score)
