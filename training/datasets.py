"""Readers of hemorrhage datasets into cases of (CT in HU, mask, spacing, patient).

- ``bcihm``: PhysioNet ct-ich as distributed: ``ct_scans/NNN.nii`` + ``masks/NNN.nii``.
- ``bcihm_jpg``: its per-slice layout ``Patients_CT/NNN/brain/K.jpg`` + ``K_HGE_Seg.jpg``
  (brain-window renderings, mapped back to approximate HU).
- ``instance``: INSTANCE 2022 ``data/*.nii.gz`` + ``label/*.nii.gz``.
- ``folder``: any ``images/`` + ``masks/`` pair of files with the same names (NIfTI, NRRD,
  DICOM slices such as ../shared/data/ct-ich-slices, PNG); the patient is the name before "_".
- ``shared_real``: the real slices of ../shared/data (``ct-ich-slices``, ``mbh-2024-slices`` with
  five-class masks, ``ct-ich-jpg-slices``): 59 slices of 35 patients/scans, patients named
  ``<dataset>/<id>`` so that no two datasets' patients are confused.
- ``ct_ich_volumes``: the whole head CTs of ../shared/data/ct-ich-volumes (``images/NNN.nii.gz``,
  ``masks/NNN.nii.gz``, per-slice subtype flags in ``slices.csv``): 57 patients named ``ct-ich/NNN``
  like the ct-ich slices, so that folds by patient hold across both; volumes without bleed included.
- ``phantom``: synthetic head CTs with random bleeds (SAMIHSLib.phantom).
- ``packed``: one ``.npz`` written by ``write_packed`` (``python -m training pack``): any of the
  above in a single NumPy file, to move to a training machine that has no SimpleITK.
Every reader says exactly what is wrong with a malformed dataset.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from SAMIHSLib.io.atomic_write import atomic_output
from SAMIHSLib.phantom import BLEED_KINDS, BleedSpec, make_head_phantom
from SAMIHSLib.io.validation import InputError, validate_ct_volume
from SAMIHSLib.io.volume_io import read_ct, read_png_slice


class DatasetError(ValueError):
    """A dataset folder is missing files, mismatched, or unreadable."""


# Class values of five-class hemorrhage masks (BHSD / MBH-Seg 2024).
SUBTYPES: Dict[int, str] = {1: "EDH", 2: "IPH", 3: "IVH", 4: "SAH", 5: "SDH"}
UNLABELLED_SUBTYPE = "unlabelled"


@dataclass
class Case:
    """One scan (or slice): ``image_hu`` and ``mask`` (k, j, i), ``spacing_zyx`` in mm;
    ``subtype_labels`` (k, j, i) uint8 with :data:`SUBTYPES` values when the dataset has them."""

    name: str
    patient: str
    image_hu: np.ndarray
    mask: np.ndarray
    spacing_zyx: Tuple[float, float, float]
    subtype_labels: Optional[np.ndarray] = None
    # Per-slice subtype flags where the dataset gives them per slice, not per voxel: k -> names.
    slice_subtypes: Optional[Dict[int, Tuple[str, ...]]] = None

    def hemorrhage_slices(self) -> List[int]:
        return [int(k) for k in np.nonzero(self.mask.any(axis=(1, 2)))[0]]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"Expected {what} at {path}, but it is not a folder.")
    return path


def _pairs(image_dir: Path, mask_dir: Path, pattern: str, mask_name: Callable[[Path], str]) -> List[Tuple[Path, Path]]:
    images = sorted(p for p in image_dir.glob(pattern) if p.is_file())
    if not images:
        raise DatasetError(f"No images matching {pattern} in {image_dir}.")
    pairs, missing = [], []
    for image in images:
        mask = mask_dir / mask_name(image)
        (pairs.append((image, mask)) if mask.is_file() else missing.append(mask.name))
    if missing:
        raise DatasetError(f"{len(missing)} image(s) in {image_dir} have no mask in {mask_dir}, e.g. {missing[:3]}.")
    return pairs


def _case(image_path: Path, mask_path: Path, patient: str, reader=None, subtype_classes: bool = False) -> Case:
    import SimpleITK as sitk

    try:
        volume = (reader or read_ct)(image_path)
        mask_image = sitk.ReadImage(str(mask_path)) if mask_path.suffix.lower() not in (".png", ".jpg") else None
    except (InputError, RuntimeError) as error:
        raise DatasetError(f"Cannot read {image_path.name} / {mask_path.name}: {error}") from error
    if mask_image is not None:
        mask = sitk.GetArrayFromImage(mask_image)
        mask = mask[None] if mask.ndim == 2 else mask
    else:
        mask = np.asarray(Image.open(mask_path).convert("L"))[None]
    if mask.shape != volume.array_hu.shape:
        raise DatasetError(f"{mask_path.name} has shape {mask.shape}, its image {volume.array_hu.shape}.")
    subtypes = None
    if subtype_classes:
        unknown = sorted(set(np.unique(mask).tolist()) - {0} - set(SUBTYPES))
        if unknown:
            raise DatasetError(f"{mask_path.name} has class values {unknown}; subtype masks use {SUBTYPES}.")
        subtypes = mask.astype(np.uint8)
    return Case(image_path.name, patient, volume.array_hu.astype(np.float32), mask > 0, volume.spacing_zyx,
                subtypes)


def read_bcihm(root: Path) -> List[Case]:
    root = Path(root)
    pairs = _pairs(_require_dir(root / "ct_scans", "BCIHM ct_scans/"), _require_dir(root / "masks", "BCIHM masks/"),
                   "*.nii*", lambda p: p.name)
    return [_case(image, mask, image.name.split(".")[0]) for image, mask in pairs]


def read_instance(root: Path) -> List[Case]:
    root = Path(root)
    pairs = _pairs(_require_dir(root / "data", "INSTANCE data/"), _require_dir(root / "label", "INSTANCE label/"),
                   "*.nii*", lambda p: p.name)
    return [_case(image, mask, image.name.split(".")[0]) for image, mask in pairs]


def read_folder(root: Path, patient_prefix: str = "", subtype_classes: bool = False) -> List[Case]:
    """``images/`` + ``masks/`` with the same file names; the patient is the name before "_"."""
    root = Path(root)
    pairs = _pairs(_require_dir(root / "images", "images/"), _require_dir(root / "masks", "masks/"), "*",
                   lambda p: p.name)
    return [_case(image, mask, patient_prefix + image.name.split("_")[0], subtype_classes=subtype_classes)
            for image, mask in pairs]


# The real slices in ../shared/data: folder, patient namespace (ct-ich's JPG release shares the
# NIfTI release's patient numbers), whether masks carry subtype classes.
SHARED_REAL_FOLDERS: Tuple[Tuple[str, str, bool], ...] = (
    ("ct-ich-slices", "ct-ich/", False),
    ("ct-ich-jpg-slices", "ct-ich/", False),
    ("mbh-2024-slices", "bhsd/", True),
)
SHARED_PIXEL_SPACING_MM = 0.45  # none of these files records its true in-plane spacing (data README)


def read_shared_real(root: Path) -> List[Case]:
    """All real slices under ``root`` (../shared/data), in-plane spacing 0.45 mm where unknown."""
    cases: List[Case] = []
    for folder, prefix, classes in SHARED_REAL_FOLDERS:
        for case in read_folder(Path(root) / folder, prefix, classes):
            case.spacing_zyx = (case.spacing_zyx[0], SHARED_PIXEL_SPACING_MM, SHARED_PIXEL_SPACING_MM)
            cases.append(case)
    return cases


VOLUME_SUBTYPE_FLAGS = ("EDH", "IPH", "IVH", "SAH", "SDH")


def _slice_subtype_flags(table: Path) -> Dict[str, Dict[int, Tuple[str, ...]]]:
    """patient id -> {0-based slice index -> subtype flags set on it} from ct-ich's slices.csv
    (its slice numbers count from 1)."""
    import csv

    if not table.is_file():
        raise DatasetError(f"Expected the per-slice subtype table at {table}.")
    flags: Dict[str, Dict[int, Tuple[str, ...]]] = {}
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                names = tuple(name for name in VOLUME_SUBTYPE_FLAGS if row[name].strip() == "1")
                flags.setdefault(row["patient"].strip(), {})[int(row["slice"]) - 1] = names
            except (KeyError, ValueError) as error:
                raise DatasetError(f"{table}: a row lacks patient, slice or a subtype flag ({error}).") from error
    return flags


def read_ct_ich_volumes(root: Path) -> List[Case]:
    """Every whole head CT of ct-ich-volumes (with or without bleed), with per-slice subtype flags."""
    root = Path(root)
    pairs = _pairs(_require_dir(root / "images", "ct-ich-volumes images/"),
                   _require_dir(root / "masks", "ct-ich-volumes masks/"), "*.nii*", lambda p: p.name)
    flags = _slice_subtype_flags(root / "slices.csv")
    cases = []
    for image, mask in pairs:
        patient = image.name.split(".")[0]
        case = _case(image, mask, "ct-ich/" + patient)
        case.slice_subtypes = flags.get(patient, {})
        cases.append(case)
    return cases


def read_bcihm_jpg(root: Path, window_level_hu: float = 40.0, window_width_hu: float = 80.0) -> List[Case]:
    patients = _require_dir(Path(root) / "Patients_CT", "BCIHM Patients_CT/")
    cases = []
    for patient_dir in sorted(p for p in patients.iterdir() if p.is_dir()):
        brain = _require_dir(patient_dir / "brain", f"{patient_dir.name}/brain/")
        for image in sorted(p for p in brain.glob("*.jpg") if not p.stem.endswith("_HGE_Seg")):
            mask = image.with_name(f"{image.stem}_HGE_Seg.jpg")
            if not mask.is_file():
                continue  # ct-ich ships a mask only for slices with hemorrhage: these are negatives
            cases.append(_case(image, mask, patient_dir.name,
                               reader=lambda p: read_png_slice(p, window_level_hu, window_width_hu)))
    if not cases:
        raise DatasetError(f"No slice with a *_HGE_Seg.jpg mask under {patients}.")
    return cases


def phantom_cases(count: int, seed: int = 0, shape: Tuple[int, int, int] = (4, 512, 512)) -> List[Case]:
    """``count`` small synthetic scans with one or two random bleeds each."""
    rng = np.random.default_rng(seed)
    cases = []
    for number in range(count):
        bleeds = []
        for _ in range(int(rng.integers(1, 3))):
            kind = str(rng.choice(BLEED_KINDS))
            angle = rng.uniform(0, 2 * np.pi)
            if kind in ("epidural", "subdural"):
                centre = (60 * np.cos(angle), 78 * np.sin(angle), rng.uniform(-4, 4))
                size = (rng.uniform(15, 35), rng.uniform(4, 10), rng.uniform(8, 20))
            elif kind == "intraventricular":
                centre, size = (rng.choice([-9.0, 9.0]), rng.uniform(-10, 5), 4.0), (4.0, rng.uniform(6, 12), 8.0)
            else:
                radius = rng.uniform(5, 45)
                centre = (radius * np.cos(angle), radius * np.sin(angle), rng.uniform(-4, 4))
                size = tuple(rng.uniform(4, 16, size=3))
            bleeds.append(BleedSpec(kind, tuple(float(c) for c in centre), tuple(float(s) for s in size),
                                    float(rng.uniform(55, 80))))
        pixel_mm = 230.0 / shape[1]  # a 23 cm field of view, whatever the matrix
        phantom = make_head_phantom(shape=shape, spacing_zyx=(5.0, pixel_mm, pixel_mm), bleeds=bleeds,
                                    noise_hu=float(rng.uniform(3, 7)), seed=int(rng.integers(1 << 30)))
        cases.append(Case(f"phantom_{number:03d}", f"phantom_{number:03d}", phantom.volume_hu.astype(np.float32),
                          phantom.bleed_labels > 0, phantom.spacing_zyx))
    return cases


_PACKED_FIELDS = ("name", "patient", "spacing_zyx", "image_hu", "mask")


def write_packed(cases: List[Case], path: Path) -> Path:
    """All ``cases`` in one compressed ``.npz`` (HU as int16, masks as bool), read by ``read_packed``."""
    arrays: Dict[str, np.ndarray] = {"count": np.array(len(cases))}
    for index, case in enumerate(cases):
        arrays[f"{index}/name"], arrays[f"{index}/patient"] = np.array(case.name), np.array(case.patient)
        arrays[f"{index}/spacing_zyx"] = np.asarray(case.spacing_zyx, dtype=np.float64)
        arrays[f"{index}/image_hu"] = np.clip(np.round(case.image_hu), -32768, 32767).astype(np.int16)
        arrays[f"{index}/mask"] = case.mask.astype(bool)
        if case.subtype_labels is not None:
            arrays[f"{index}/subtype_labels"] = case.subtype_labels.astype(np.uint8)
    with atomic_output(Path(path)) as temporary:
        np.savez_compressed(temporary, **arrays)
    return Path(path)


def read_packed(path: Path) -> List[Case]:
    if not Path(path).is_file():
        raise DatasetError(f"Expected a packed dataset (.npz from `python -m training pack`) at {path}.")
    try:
        with np.load(path, allow_pickle=False) as data:
            cases = []
            for index in range(int(data["count"])):
                missing = [f for f in _PACKED_FIELDS if f"{index}/{f}" not in data]
                if missing:
                    raise DatasetError(f"{path}: case {index} lacks {missing}.")
                spacing = tuple(float(v) for v in data[f"{index}/spacing_zyx"])
                subtypes = data[f"{index}/subtype_labels"] if f"{index}/subtype_labels" in data else None
                cases.append(Case(str(data[f"{index}/name"]), str(data[f"{index}/patient"]),
                                  data[f"{index}/image_hu"].astype(np.float32), data[f"{index}/mask"].astype(bool),
                                  spacing, subtypes))  # type: ignore[arg-type]
    except DatasetError:  # already specific (it is a ValueError too)
        raise
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"{path} is not a packed dataset: {error}") from error
    for case in cases:
        if case.mask.shape != case.image_hu.shape:
            raise DatasetError(f"{path}: {case.name} has mask {case.mask.shape} but image {case.image_hu.shape}.")
    return cases


READERS: Dict[str, Callable[..., List[Case]]] = {
    "bcihm": read_bcihm, "bcihm_jpg": read_bcihm_jpg, "instance": read_instance, "folder": read_folder,
    "packed": read_packed, "shared_real": read_shared_real, "ct_ich_volumes": read_ct_ich_volumes,
}


def load_dataset(kind: str, root: str, pixel_spacing_mm: Optional[float] = None) -> List[Case]:
    """Cases of a dataset of ``kind`` (see READERS) at ``root``; checks they are CT with masks.

    ``pixel_spacing_mm`` sets the in-plane spacing of files that lack it (secondary-capture
    DICOM such as ct-ich-slices: about 0.45 mm), so HD95 and volumes come out in true mm / mL.
    """
    if kind not in READERS:
        raise DatasetError(f"Unknown dataset kind {kind!r}; use one of {sorted(READERS)} or 'phantom'.")
    cases = READERS[kind](Path(root))
    if pixel_spacing_mm is not None:
        for case in cases:
            case.spacing_zyx = (case.spacing_zyx[0], float(pixel_spacing_mm), float(pixel_spacing_mm))
    for case in cases:
        try:
            validate_ct_volume(case.image_hu, what=case.name)
        except InputError as error:
            raise DatasetError(str(error)) from error
    return cases
