"""Segmenting many CT volumes in one go: one ``.seg.nrrd`` and one CSV row per volume.

Prompts per volume come from a JSON file (checked against ``PROMPTS_SCHEMA`` before anything
runs), from Slicer markups files, or from the bleed detector (``auto``). Each positive click is its
own bleed (clicked, then propagated); their masks are joined into one "Hemorrhage" segment. In
``auto`` mode each detected region is its own segment named with its score, so a reader can delete
one, and a head where nothing is detected gets the status "no bleed found" (a result, with the
detector's highest score), not "failed". A volume that fails is reported with its reason and the
rest go on. Beside each result a manifest records
what made it (input file hash, prompts, model weights hash, engine, SAMIHS version): a rerun skips
a volume only when its manifest matches, and redoes it otherwise. Two inputs that would write the
same result name are both refused with the reason.
"""

import functools
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from SAMIHSLib import __version__
from SAMIHSLib.io.atomic_write import write_text_atomic
from SAMIHSLib.io.markups_io import read_markups_clicks
from SAMIHSLib.io.report import (FAILED, NO_BLEED_FOUND, OK, SegmentationReport, read_reports_csv,
                                 reports_csv_text)
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.models.summary import ModelSummary
from SAMIHSLib.io.segment_terms import SEGMENT_NAME
from SAMIHSLib.io.validation import InputError
from SAMIHSLib.progress import ProgressCallback
from SAMIHSLib.io.volume_files import find_volumes, volume_name
from SAMIHSLib.volume.reports import mask_report
from SAMIHSLib.volume.segmentation import VolumePrompts, segment_volume
from SAMIHSLib.io.volume_io import AxialStack, CTVolume, clicks_to_slice_column_row, read_ct, write_seg_nrrd

REPORT_NAME = "samihs_batch_report.csv"  # one row per volume: SAMIHSLib.io.report.CSV_COLUMNS
DONE_STATUSES = (OK, NO_BLEED_FOUND)  # results: a rerun skips them when nothing that made them changed

MANIFEST_SUFFIX = ".samihs.json"

# The prompts file: {volume name: entry}; an entry is a markups file path, or an object.
PROMPT_ENTRY_KEYS = {"points": "positive clicks, a list of [x, y, z]",
                     "negative": "negative clicks, a list of [x, y, z]",
                     "coords": "'ijk' (default), 'ras' or 'lps'"}
PROMPTS_SCHEMA = {
    "type": "object", "description": "volume name (file name without suffix) -> prompts",
    "additionalProperties": {"oneOf": [
        {"type": "string", "description": "a .mrk.json file, relative to the prompts file"},
        {"type": "object", "additionalProperties": False, "required": ["points"], "properties": {
            "points": {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 2, "maxItems": 3,
                                                                  "items": {"type": "number"}}},
            "negative": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 3,
                                                    "items": {"type": "number"}}},
            "coords": {"enum": ["ijk", "ras", "lps"], "description": "case-insensitive"}}},
    ]},
}


def validate_prompt_table(table: object, source: str) -> Dict[str, object]:
    """Check a parsed prompts file against :data:`PROMPTS_SCHEMA`; every error names its key."""
    if not isinstance(table, dict):
        raise InputError(f"{source}: the prompts file must be a JSON object {{volume: prompts}}, "
                         f"not a {type(table).__name__}.")
    for name, entry in table.items():
        where = f"{source}: {name!r}"
        if isinstance(entry, str):
            continue
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be an object {{\"points\": [[x, y, z]], ...}} or a markups file name, "
                             f"not a {type(entry).__name__}.")
        unknown = sorted(set(entry) - set(PROMPT_ENTRY_KEYS))
        if unknown:
            raise InputError(f"{where} has unknown key(s) {unknown}; the keys are " +
                             "; ".join(f"{k}: {v}" for k, v in PROMPT_ENTRY_KEYS.items()) + ".")
        if "points" not in entry:
            raise InputError(f"{where} has no \"points\" (positive clicks).")
        for key in ("points", "negative"):
            points = entry.get(key, [])
            if not isinstance(points, list) or (key == "points" and not points):
                raise InputError(f"{where}.{key} must be a non-empty list of [x, y, z] clicks.")
            for index, point in enumerate(points):
                if (not isinstance(point, list) or len(point) not in (2, 3)
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)):
                    raise InputError(f"{where}.{key}[{index}] must be 2 or 3 numbers, got {point!r}.")
        coords = entry.get("coords", "ijk")
        if not isinstance(coords, str) or coords.lower() not in ("ijk", "ras", "lps"):
            raise InputError(f"{where}.coords is {coords!r}; use 'ijk', 'ras' or 'lps'.")
    return table


class PromptSource:
    """Where clicks come from: ``auto``, a JSON file, or a folder of ``<volume>.mrk.json``."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._table: Optional[Dict[str, object]] = None
        if not self.automatic:
            path = Path(spec)
            if not path.exists():
                raise InputError(f"Prompts not found: {spec} (use 'auto', a JSON file or a markups folder).")
            if path.is_file() and not path.name.lower().endswith(".mrk.json"):
                try:
                    table = json.loads(path.read_text())
                except ValueError as error:
                    raise InputError(f"Prompts file {path} is not valid JSON: {error}") from error
                self._table = validate_prompt_table(table, str(path))

    @property
    def automatic(self) -> bool:
        """No clicks: the bleed detector proposes the regions."""
        return self.spec == "auto"

    @functools.cached_property
    def _automatic_fingerprint(self) -> str:
        """What made automatic results: the mode and the detector (hashed once per batch, not per volume)."""
        from SAMIHSLib.volume.automatic import AUTOMATIC_MODE, detector_fingerprint, load_detector

        return f"auto {AUTOMATIC_MODE} {detector_fingerprint(load_detector())}"

    def clicks_for(self, path: Path, volume: CTVolume) -> VolumePrompts:
        name = volume_name(path)
        if self.automatic:
            raise ValueError("Automatic prompts have no clicks: the detector segments (segment_automatically).")
        if self._table is not None:
            entry = self._table.get(name, self._table.get(path.name))
            if entry is None:
                raise InputError(f"No prompts for {name} in {self.spec}.")
            if isinstance(entry, str):  # a path to a markups file
                return self._from_markups(Path(self.spec).parent / entry, volume)
            coords = str(entry.get("coords", "ijk")).lower()  # type: ignore[union-attr]
            return VolumePrompts(clicks_to_slice_column_row(entry["points"], coords, volume),  # type: ignore[index]
                                 clicks_to_slice_column_row(entry.get("negative", []), coords, volume))  # type: ignore[union-attr]
        markups = Path(self.spec)
        if markups.is_dir():
            markups = markups / f"{name}.mrk.json"
        return self._from_markups(markups, volume)

    def fingerprint(self, path: Path) -> str:
        """What the prompts for ``path`` are, as a hash: changes when they change."""
        name = volume_name(path)
        if self.automatic:
            text = self._automatic_fingerprint
        elif self._table is not None:
            entry = self._table.get(name, self._table.get(path.name))
            text = json.dumps(entry, sort_keys=True)
            if isinstance(entry, str) and (Path(self.spec).parent / entry).is_file():
                text += (Path(self.spec).parent / entry).read_text()
        else:
            markups = Path(self.spec) / f"{name}.mrk.json" if Path(self.spec).is_dir() else Path(self.spec)
            text = markups.read_text() if markups.is_file() else "missing"
        return hashlib.sha256(text.encode()).hexdigest()

    @staticmethod
    def _from_markups(path: Path, volume: CTVolume) -> VolumePrompts:
        if not path.is_file():
            raise InputError(f"No markups file {path}.")
        clicks = read_markups_clicks(path)
        return VolumePrompts(clicks_to_slice_column_row(clicks.positive_ras, "ras", volume),
                             clicks_to_slice_column_row(clicks.negative_ras, "ras", volume))


def input_fingerprint(path: Path) -> str:
    """SHA-256 of an input file, or of every file (names and bytes) of a DICOM folder."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for file_path in files:
        digest.update(file_path.name.encode())
        with open(file_path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def weights_sha256(predictor: SAMIHSPredictor) -> str:
    """SHA-256 of the model's weights (adapters included); a model run from cached graphs has it recorded."""
    if isinstance(predictor.model, ModelSummary):
        return predictor.model.weights_sha256
    from SAMIHSLib.models.checkpoint import sha256_tensors

    return sha256_tensors(predictor.model.state_dict())


def write_report(path: Path, rows: Dict[str, Dict[str, str]]) -> None:
    """The batch CSV (one report row per volume, sorted by name), written atomically."""
    write_text_atomic(path, reports_csv_text([rows[name] for name in sorted(rows)]))


def _read_manifest(path: Path) -> Dict[str, str]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class VolumeJob:
    """One volume of a batch: where it is, where its results go, and what made them."""

    name: str
    path: Path
    out_dir: Path
    prompts: "PromptSource"  # read and checked once by the plan, shared by every job
    manifest: Dict[str, str]
    dicom_seg: bool = False

    @property
    def seg_path(self) -> Path:
        return self.out_dir / f"{self.name}.seg.nrrd"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / f"{self.name}{MANIFEST_SUFFIX}"


@dataclass
class BatchPlan:
    """What a batch run has to do: ``jobs`` to segment, and ``rows`` already decided (kept from
    an earlier run with the same manifest, or refused); ``total`` volumes in all."""

    jobs: List[VolumeJob]
    rows: Dict[str, Dict[str, str]]
    total: int
    report_path: Path


def plan_batch(inputs: Sequence[Path], prompt_spec: str, out_dir: Path, model_sha256: str, engine_name: str,
               dicom_seg: bool = False) -> BatchPlan:
    """The volumes of ``inputs`` still to segment in ``out_dir`` (the report there says what is done)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = PromptSource(prompt_spec)
    report_path = out_dir / REPORT_NAME
    rows = read_reports_csv(report_path)
    volumes = find_volumes(inputs)
    by_name: Dict[str, List[Path]] = {}
    for path in volumes:
        by_name.setdefault(volume_name(path), []).append(path)
    jobs = []
    for path in volumes:
        name = volume_name(path)
        if len(by_name[name]) > 1:  # both would write {name}.seg.nrrd: refuse, never overwrite
            rows[name] = failed_row(name, "inputs with the same name would write the same result: " +
                                    ", ".join(str(p) for p in by_name[name]) + "; rename one")
            continue
        try:
            manifest = {"input": str(path), "input_sha256": input_fingerprint(path),
                        "prompts": prompt_spec, "prompts_sha256": source.fingerprint(path),
                        "model_sha256": model_sha256, "engine": engine_name, "samihs_version": __version__}
        except (InputError, ValueError, OSError) as error:
            rows[name] = failed_row(name, str(error))
            continue
        job = VolumeJob(name, path, out_dir, source, manifest, dicom_seg)
        status = rows.get(name, {}).get("status")
        if (status in DONE_STATUSES and (job.seg_path.is_file() or status == NO_BLEED_FOUND)
                and _read_manifest(job.manifest_path) == manifest):
            continue  # made in an earlier run from the same input, prompts, model and engine
        jobs.append(job)
    return BatchPlan(jobs, rows, len(volumes), report_path)


def process_volume(job: VolumeJob, predictor: SAMIHSPredictor,
                   cancel: Optional[threading.Event] = None) -> Dict[str, str]:
    """Segment one volume and write its results (atomically); returns its report row. A bad
    volume gives a ``failed`` row with the reason instead of an exception. The one per-volume
    code path of the local and the Ray batch."""
    started = time.perf_counter()
    try:
        volume = read_ct(job.path)
        stack = AxialStack.of(volume)
        if job.prompts.automatic:  # the detector needs torch; a batch of clicks runs without it
            from SAMIHSLib.volume.automatic import AUTOMATIC_MODE, load_detector, segment_automatically

            result = segment_automatically(stack, load_detector(), predictor, AUTOMATIC_MODE, cancel)
            found = {"detection_score": result.top_score, "detected_regions": len(result.regions),
                     "reason": result.describe()}
            if not result.bleed_found:
                for stale in (job.seg_path, job.out_dir / f"{job.name}.seg.dcm"):
                    stale.unlink(missing_ok=True)  # an earlier run's result no longer holds
                write_text_atomic(job.manifest_path, json.dumps(job.manifest, indent=2) + "\n")
                return mask_report(job.name, result.mask, stack.spacing_zyx, predictor, status=NO_BLEED_FOUND,
                                   seconds=time.perf_counter() - started, **found).csv_row()
            segments = {f"{SEGMENT_NAME} {number} (score {region.score:.3f})": stack.mask_to_volume(mask)
                        for number, (region, mask) in enumerate(zip(result.regions, result.region_masks), 1)}
            mask = result.mask  # no clicks: see detected_regions
        else:
            prompts = job.prompts.clicks_for(job.path, volume)
            mask = segment_volume(predictor, stack, prompts, cancel)
            segments, found = {SEGMENT_NAME: stack.mask_to_volume(mask)}, {"bleeds_clicked": len(prompts.positive)}
        write_seg_nrrd(job.seg_path, segments, volume)
        if job.dicom_seg and volume.dicom_files:
            from SAMIHSLib.io.dicom_seg import write_dicom_seg

            write_dicom_seg(job.out_dir / f"{job.name}.seg.dcm", stack.mask_to_volume(mask), volume.dicom_files)
        write_text_atomic(job.manifest_path, json.dumps(job.manifest, indent=2) + "\n")
        return mask_report(job.name, mask, stack.spacing_zyx, predictor, segmentation=job.seg_path.name,
                           seconds=time.perf_counter() - started, **found).csv_row()
    except (InputError, ValueError, RuntimeError, OSError) as error:
        return failed_row(job.name, str(error))


def failed_row(volume: str, reason: str) -> Dict[str, str]:
    """The report row of a volume that could not be segmented: its first line of reason."""
    first_line = (reason.splitlines() or ["no reason given"])[0]
    return SegmentationReport(volume, status=FAILED, reason=first_line).csv_row()


def run_batch(inputs: Sequence[Path], prompt_spec: str, out_dir: Path, predictor: SAMIHSPredictor,
              progress: Optional[ProgressCallback] = None,
              cancel: Optional[threading.Event] = None, dicom_seg: bool = False) -> Dict[str, Dict[str, str]]:
    """Segment every volume of ``inputs``; returns the report rows keyed by volume name.
    ``dicom_seg``: also write ``<volume>.seg.dcm`` (DICOM SEG) for each DICOM series input."""
    plan = plan_batch(inputs, prompt_spec, out_dir, weights_sha256(predictor), predictor.engine_name,
                      dicom_seg)
    rows = plan.rows
    write_report(plan.report_path, rows)
    done = plan.total - len(plan.jobs)
    for job in plan.jobs:
        if cancel is not None and cancel.is_set():
            break
        if progress is not None:
            progress(done, plan.total, job.name)
        rows[job.name] = process_volume(job, predictor, cancel)
        write_report(plan.report_path, rows)
        done += 1
    if progress is not None:
        progress(plan.total, plan.total, "done")
    return rows
