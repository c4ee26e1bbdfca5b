"""Segmenting many CT volumes in one go: one ``.seg.nrrd`` and one CSV row per volume.

Prompts per volume come from a JSON file, from Slicer markups files, or from automatic seeds
(``auto``). Each positive click is its own bleed (clicked, then propagated); their masks are
joined into one "Hemorrhage" segment. A volume that fails is reported with its reason and skipped;
a rerun skips volumes whose segmentation and "ok" row already exist.
"""

import csv
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .auto_seeds import find_seed_clicks
from .markups_io import read_markups_clicks
from .measurements import measure_hemorrhage
from .predictor import SAMIHSPredictor
from .session import HemorrhageSession
from .validation import InputError
from .volume_io import (PNG_SUFFIXES, VOLUME_SUFFIXES, CTVolume, clicks_to_kji, read_ct, to_axial_stack,
                        write_seg_nrrd)

REPORT_NAME = "samihs_batch_report.csv"
REPORT_COLUMNS = ("volume", "status", "reason", "segmentation", "bleeds_clicked", "volume_ml", "abc_over_2_ml",
                  "max_axial_area_mm2", "first_slice", "last_slice", "num_slices", "seconds")

Click = Tuple[int, float, float]  # (slice k, column x, row y)


@dataclass
class VolumePrompts:
    """Clicks for one volume, as (k, x, y) voxel positions."""

    positive: List[Click] = field(default_factory=list)
    negative: List[Click] = field(default_factory=list)


def volume_name(path: Path) -> str:
    """The file name without its (possibly double) image suffix: ``ct01.nii.gz`` -> ``ct01``."""
    name = path.name
    for suffix in sorted(VOLUME_SUFFIXES + PNG_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_volumes(inputs: Sequence[Path]) -> List[Path]:
    """Expand folders: image files inside, or the folder itself if it is a DICOM series."""
    found: List[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.is_file() and p.name.lower().endswith(VOLUME_SUFFIXES)
                           and not p.name.lower().endswith(".dcm"))
            dicom_dirs = sorted(p for p in item.iterdir() if p.is_dir() and any(p.glob("*.dcm")))
            found.extend(files + dicom_dirs if (files or dicom_dirs) else [item])
        else:
            found.append(item)
    return found


class PromptSource:
    """Where clicks come from: ``auto``, a JSON file, or a folder of ``<volume>.mrk.json``."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._table: Optional[Dict[str, object]] = None
        if spec != "auto":
            path = Path(spec)
            if not path.exists():
                raise InputError(f"Prompts not found: {spec} (use 'auto', a JSON file or a markups folder).")
            if path.is_file() and not path.name.lower().endswith(".mrk.json"):
                try:
                    self._table = json.loads(path.read_text())
                except ValueError as error:
                    raise InputError(f"Prompts file {path} is not valid JSON: {error}") from error

    def clicks_for(self, path: Path, volume: CTVolume, axial_spacing: Sequence[float]) -> VolumePrompts:
        name = volume_name(path)
        if self.spec == "auto":
            return VolumePrompts(positive=find_seed_clicks(volume.array_hu, axial_spacing))
        if self._table is not None:
            entry = self._table.get(name, self._table.get(path.name))
            if entry is None:
                raise InputError(f"No prompts for {name} in {self.spec}.")
            if isinstance(entry, str):  # a path to a markups file
                return self._from_markups(Path(self.spec).parent / entry, volume)
            coords = str(entry.get("coords", "ijk"))  # type: ignore[union-attr]
            return VolumePrompts(clicks_to_kji(entry.get("points", []), coords, volume),  # type: ignore[union-attr]
                                 clicks_to_kji(entry.get("negative", []), coords, volume))  # type: ignore[union-attr]
        markups = Path(self.spec)
        if markups.is_dir():
            markups = markups / f"{name}.mrk.json"
        return self._from_markups(markups, volume)

    @staticmethod
    def _from_markups(path: Path, volume: CTVolume) -> VolumePrompts:
        if not path.is_file():
            raise InputError(f"No markups file {path}.")
        clicks = read_markups_clicks(path)
        return VolumePrompts(clicks_to_kji(clicks.positive_ras, "ras", volume),
                             clicks_to_kji(clicks.negative_ras, "ras", volume))


def segment_volume(predictor: SAMIHSPredictor, volume: CTVolume, prompts: VolumePrompts,
                   cancel: Optional[threading.Event] = None) -> np.ndarray:
    """The joined 3D mask of every positive click (each clicked and propagated on its own)."""
    axial, spacing, permutation = to_axial_stack(volume)
    if permutation != (0, 1, 2):
        raise InputError("The slice axis is not superior-inferior; resample to axial first.")
    if not prompts.positive:
        raise InputError("No hyperdense region found to seed from (no suspected hemorrhage).")
    predictor.set_volume(axial, spacing)
    joined = np.zeros(axial.shape, dtype=bool)
    for k, x, y in prompts.positive:
        session = HemorrhageSession(predictor)
        negatives = [(nx, ny) for nk, nx, ny in prompts.negative if nk == k]
        session.click(k, [(x, y)], negatives, cancel=cancel)
        joined |= session.mask
    return joined


def _read_report(path: Path) -> Dict[str, Dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row["volume"]: row for row in csv.DictReader(handle)}


def _write_report(path: Path, rows: Dict[str, Dict[str, str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        for name in sorted(rows):
            writer.writerow({column: rows[name].get(column, "") for column in REPORT_COLUMNS})
    tmp.replace(path)


def run_batch(inputs: Sequence[Path], prompt_spec: str, out_dir: Path, predictor: SAMIHSPredictor,
              progress: Optional[Callable[[int, int, str], None]] = None,
              cancel: Optional[threading.Event] = None) -> Dict[str, Dict[str, str]]:
    """Segment every volume of ``inputs``; returns the report rows keyed by volume name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = PromptSource(prompt_spec)
    report_path = out_dir / REPORT_NAME
    rows = _read_report(report_path)
    volumes = find_volumes(inputs)
    for done, path in enumerate(volumes):
        if cancel is not None and cancel.is_set():
            break
        name = volume_name(path)
        seg_path = out_dir / f"{name}.seg.nrrd"
        if progress is not None:
            progress(done, len(volumes), name)
        if rows.get(name, {}).get("status") == "ok" and seg_path.is_file():
            continue  # finished in an earlier run
        started = time.perf_counter()
        try:
            volume = read_ct(path)
            _, spacing, _ = to_axial_stack(volume)
            prompts = source.clicks_for(path, volume, spacing)
            mask = segment_volume(predictor, volume, prompts, cancel)
            write_seg_nrrd(seg_path, {"Hemorrhage": mask}, volume)
            measured = measure_hemorrhage(mask, spacing)
            rows[name] = {"volume": name, "status": "ok", "reason": "", "segmentation": seg_path.name,
                          "bleeds_clicked": str(len(prompts.positive)),
                          "seconds": f"{time.perf_counter() - started:.1f}",
                          **{key: (f"{value:.3f}" if isinstance(value, float) else str(value))
                             for key, value in measured.to_dict().items()}}
        except (InputError, ValueError, RuntimeError, OSError) as error:
            rows[name] = {"volume": name, "status": "failed", "reason": str(error).splitlines()[0]}
        _write_report(report_path, rows)
    if progress is not None:
        progress(len(volumes), len(volumes), "done")
    return rows
