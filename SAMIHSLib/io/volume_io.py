"""Reading CT images with their geometry and writing masks that keep it exactly.

Index order: arrays are (k, j, i) = (slice, row, column), as SimpleITK and Slicer's
``arrayFromVolume`` use. Physical frames: files and SimpleITK are LPS; Slicer shows RAS
(x and y negated). ``CTVolume`` keeps the LPS origin, spacing (i, j, k) in mm and direction.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import nrrd
import numpy as np
from PIL import Image

from SAMIHSLib.io.atomic_write import atomic_output
from SAMIHSLib.io.image_file_checks import check_declared_size, check_nifti_complete, check_series_spacing
from SAMIHSLib.io.segment_terms import SEGMENT_NAME
from SAMIHSLib.io.validation import InputError, validate_ct_volume, validate_point_in_slice

if TYPE_CHECKING:  # SimpleITK is imported where files are read or written: a training machine
    import SimpleITK as sitk  # that reads packed .npz cases does not need it

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
PNG_SUFFIXES = (".png", ".jpg", ".jpeg")
LABELMAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
SEG_NRRD_SUFFIX = ".seg.nrrd"
DICOM_SEG_SUFFIX = ".dcm"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
DICOM_PIXEL_SPACING = "0028|0030"


@dataclass
class CTVolume:
    """A CT volume in HU with its geometry.

    ``array_hu``: (k, j, i); ``spacing_ijk`` mm; ``origin_lps`` mm; ``direction_lps`` 3x3 whose
    columns are the i, j, k axis directions in LPS.
    """

    array_hu: np.ndarray
    spacing_ijk: Tuple[float, float, float]
    origin_lps: Tuple[float, float, float]
    direction_lps: np.ndarray
    source: str = ""
    # True when the file does not record its voxel size (secondary-capture DICOM, PNG): the
    # spacing is a guess, so volumes in mL are too; say so wherever a volume is reported.
    spacing_assumed: bool = False
    # How an unrecorded spacing was filled in, in words ("" when the file records it).
    spacing_note: str = ""
    # The DICOM files of a series input, in slice (k) order: what a DICOM SEG output references.
    dicom_files: Tuple[str, ...] = ()

    @property
    def spacing_zyx(self) -> Tuple[float, float, float]:
        """Spacing in array order (k, j, i), as the predictor takes it."""
        return (self.spacing_ijk[2], self.spacing_ijk[1], self.spacing_ijk[0])

    def ijk_to_lps_matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix from (i, j, k) voxel indices to LPS mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = np.asarray(self.direction_lps) @ np.diag(self.spacing_ijk)
        matrix[:3, 3] = self.origin_lps
        return matrix

    def ijk_to_ras_matrix(self) -> np.ndarray:
        """4x4 matrix from (i, j, k) to RAS mm: what Slicer's ``GetIJKToRASMatrix`` returns."""
        flip = np.eye(4)
        flip[:3, :3] = LPS_TO_RAS
        return flip @ self.ijk_to_lps_matrix()

    def ras_to_ijk(self, ras: Sequence[float]) -> np.ndarray:
        """Continuous (i, j, k) of a RAS point in mm."""
        point = np.append(np.asarray(ras, dtype=float), 1.0)
        return (np.linalg.inv(self.ijk_to_ras_matrix()) @ point)[:3]

    def to_sitk(self, array: Optional[np.ndarray] = None) -> "sitk.Image":
        """A SimpleITK image of ``array`` (default: the CT) with this volume's geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(self.array_hu if array is None else array)
        image.SetSpacing(tuple(float(s) for s in self.spacing_ijk))
        image.SetOrigin(tuple(float(o) for o in self.origin_lps))
        image.SetDirection(tuple(float(v) for v in np.asarray(self.direction_lps).ravel()))
        return image


def _from_sitk(image: "sitk.Image", source: str) -> CTVolume:
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{source} has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or "
                         "vector image); SAMIHS needs a scalar CT in HU.")
    if image.GetDimension() == 4:
        raise InputError(f"{source} is 4D (size {image.GetSize()}); pick one 3D time point first.")
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    array = sitk.GetArrayFromImage(image)
    array = validate_ct_volume(array, what=f"image {source}")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return CTVolume(array, tuple(image.GetSpacing()), tuple(image.GetOrigin()), direction, source)


def read_png_slice(path: Path, window_level_hu: float = 40.0, window_width_hu: float = 80.0) -> CTVolume:
    """A PNG/JPG slice rendered in a CT window, mapped back to approximate HU.

    Grey 0..255 spans the window; 0 (at or below the window floor) is taken as air.
    """
    image = Image.open(path)
    if image.mode not in ("L", "I;16", "I", "P", "LA"):
        raise InputError(f"{path} is a colour ({image.mode}) image; give a greyscale CT slice.")
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    hu = window_level_hu - window_width_hu / 2.0 + grey / 255.0 * window_width_hu
    hu[grey == 0] = -1000.0
    volume = validate_ct_volume(hu.astype(np.int16), what=f"image {path}")
    return CTVolume(volume, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3), str(path), spacing_assumed=True)


def _read_dicom_series(folder: Path) -> CTVolume:
    """The one DICOM series in ``folder``, checked for size and missing slices before reading."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"No DICOM series found in folder {folder}.")
    if len(series) > 1:
        raise InputError(f"{folder} holds {len(series)} DICOM series; point to one series folder.")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    header = sitk.ImageFileReader()
    positions = []
    for file_name in files:
        header.SetFileName(file_name)
        header.ReadImageInformation()
        positions.append(header.GetOrigin())
    check_declared_size(tuple(header.GetSize()[:2]) + (len(files),), str(folder))
    check_series_spacing(positions, f"DICOM series {folder}")
    reader.SetFileNames(files)
    volume = _from_sitk(reader.Execute(), str(folder))
    volume.spacing_assumed = not header.HasMetaDataKey(DICOM_PIXEL_SPACING)
    volume.dicom_files = tuple(files)
    return volume


def read_ct(path: Path, spacing_override_ijk: Optional[Sequence[float]] = None) -> CTVolume:
    """Read a CT volume or slice: NIfTI, NRRD, MHA, a DICOM series folder, one DICOM file,
    or a PNG/JPG slice. ``spacing_override_ijk`` replaces missing/wrong spacing (mm)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"Input not found: {path}")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise InputError(f"Input {path} exists but cannot be read (permission denied).")
    name = path.name.lower()
    try:
        if path.is_dir():
            volume = _read_dicom_series(path)
        elif name.endswith(PNG_SUFFIXES):
            volume = read_png_slice(path)
        elif name.endswith(VOLUME_SUFFIXES):
            if path.stat().st_size == 0:
                raise InputError(f"{path} is an empty file.")
            if name.endswith((".nii", ".nii.gz")):
                check_nifti_complete(path)
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            check_declared_size(reader.GetSize(), str(path))
            volume = _from_sitk(reader.Execute(), str(path))
            volume.spacing_assumed = name.endswith(".dcm") and not reader.HasMetaDataKey(DICOM_PIXEL_SPACING)
        else:
            raise InputError(f"Unsupported input {path.name}: use NIfTI, NRRD, MHA, DICOM or PNG.")
    except RuntimeError as error:  # SimpleITK reports unreadable files as RuntimeError
        raise InputError(f"Could not read {path}: {str(error).strip().splitlines()[-1]}") from error
    if spacing_override_ijk is not None:
        volume.spacing_ijk = tuple(float(s) for s in spacing_override_ijk)  # type: ignore[assignment]
        volume.spacing_assumed = False
    elif volume.spacing_assumed:
        _estimate_missing_spacing(volume)
    return volume


def _estimate_missing_spacing(volume: CTVolume) -> None:
    """Fill in an unrecorded in-plane spacing from the head's width, and say so."""
    from SAMIHSLib.io.spacing_estimate import HEAD_WIDTH_MM, estimate_pixel_spacing_mm

    pixel_mm = estimate_pixel_spacing_mm(volume.array_hu)
    if pixel_mm is None:
        volume.spacing_note = ("the file records no pixel size and no head was found to estimate one from: "
                               f"{volume.spacing_ijk[0]:g} mm assumed")
        return
    volume.spacing_ijk = (pixel_mm, pixel_mm, volume.spacing_ijk[2])
    volume.spacing_note = (f"the file records no pixel size: {pixel_mm:.3f} mm estimated from the head's width "
                           f"(taken as {HEAD_WIDTH_MM:.0f} mm across)")


CLICK_COORDINATES = ("ijk", "ras", "lps")


def clicks_to_slice_column_row(points: Sequence[Sequence[float]], coords: str,
                               volume: CTVolume) -> List[Tuple[int, float, float]]:
    """Clicks in RAS or LPS mm (``coords="ras"``/``"lps"``, case-insensitive) or IJK voxels (I
    column, J row, K slice; K may be left out of a one-slice image) -> (slice k, column i, row j)
    of the (k, j, i) array, each checked to lie inside the volume."""
    coords = str(coords).lower()
    if coords not in CLICK_COORDINATES:
        raise InputError(f"Unknown click coordinates {coords!r}; use one of {CLICK_COORDINATES}.")
    result = []
    num_k = volume.array_hu.shape[0]
    for point in points:
        if coords in ("ras", "lps"):
            if len(point) != 3:
                raise InputError(f"{coords.upper()} clicks need three numbers in mm.")
            ras = point if coords == "ras" else (-point[0], -point[1], point[2])
            i, j, k = volume.ras_to_ijk(ras)
        else:
            i, j = point[0], point[1]
            if len(point) == 2 and num_k > 1:
                raise InputError(f"This volume has {num_k} slices: give clicks as I,J,K.")
            k = point[2] if len(point) == 3 else 0
        k_index = int(round(k))
        if not 0 <= k_index < num_k:
            raise InputError(f"The click {tuple(point)} is outside the volume (slice {k_index} of 0..{num_k - 1}).")
        validate_point_in_slice(i, j, volume.array_hu.shape[1:])
        result.append((k_index, float(i), float(j)))
    return result


def _check_output(path: Path, mask: np.ndarray, reference: CTVolume) -> None:
    if mask.shape != reference.array_hu.shape:
        raise InputError(f"Mask shape {mask.shape} does not match the volume {reference.array_hu.shape}.")
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def write_labelmap(path: Path, mask: np.ndarray, reference: CTVolume) -> Path:
    """Write a uint8 label map (.nii/.nii.gz/.nrrd/.mha) with ``reference``'s exact geometry."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.name.lower().endswith(LABELMAP_SUFFIXES) or path.name.lower().endswith(SEG_NRRD_SUFFIX):
        raise InputError(f"Label maps are written as {', '.join(LABELMAP_SUFFIXES)}; got {path.name}.")
    _check_output(path, mask, reference)
    with atomic_output(path) as temporary:
        sitk.WriteImage(reference.to_sitk(mask.astype(np.uint8)), str(temporary), useCompression=True)
    return path


def write_seg_nrrd(path: Path, masks: Dict[str, np.ndarray], reference: CTVolume,
                   colors: Optional[Dict[str, Tuple[float, float, float]]] = None) -> Path:
    """Write a Slicer segmentation (.seg.nrrd): one segment per named mask, shared label layer
    (later masks win where they overlap), geometry of ``reference``."""
    path = Path(path)
    if not path.name.lower().endswith(SEG_NRRD_SUFFIX):
        raise InputError(f"A Slicer segmentation file must end with {SEG_NRRD_SUFFIX}; got {path.name}.")
    shape = reference.array_hu.shape
    labels = np.zeros(shape, dtype=np.uint8)
    header: Dict[str, object] = {}
    for number, (name, mask) in enumerate(masks.items()):
        _check_output(path, mask, reference)
        labels[mask.astype(bool)] = number + 1
        k, j, i = np.nonzero(mask)
        extent = f"{i.min()} {i.max()} {j.min()} {j.max()} {k.min()} {k.max()}" if k.size else "0 -1 0 -1 0 -1"
        color = (colors or {}).get(name, (0.85, 0.2, 0.2))
        header.update({
            f"Segment{number}_ID": name.replace(" ", "_"), f"Segment{number}_Name": name,
            f"Segment{number}_Color": " ".join(f"{c:.6g}" for c in color),
            f"Segment{number}_ColorAutoGenerated": "0", f"Segment{number}_Extent": extent,
            f"Segment{number}_LabelValue": str(number + 1), f"Segment{number}_Layer": "0",
            f"Segment{number}_Tags": "Segmentation.Status:inprogress|",
            f"Segment{number}_NameAutoGenerated": "0",
        })
    ijk_to_lps = reference.ijk_to_lps_matrix()
    header.update({
        "type": "unsigned char", "dimension": 3, "space": "left-posterior-superior",
        "sizes": np.array(labels.shape[::-1]), "space directions": ijk_to_lps[:3, :3].T,
        "kinds": ["domain", "domain", "domain"], "encoding": "gzip",
        "space origin": ijk_to_lps[:3, 3],
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    })
    with atomic_output(path) as temporary:
        nrrd.write(str(temporary), np.ascontiguousarray(labels.transpose(2, 1, 0)), header, index_order="F")
    return path


def check_mask_output(path: Path) -> Path:
    """Refuse, before any work, a mask output whose suffix we cannot write or whose place is not
    writable; returns ``path``."""
    from SAMIHSLib.io.atomic_write import check_writable

    name = Path(path).name.lower()
    if not (name.endswith(SEG_NRRD_SUFFIX) or name.endswith(LABELMAP_SUFFIXES) or name.endswith(DICOM_SEG_SUFFIX)):
        raise InputError(f"Write the result as {SEG_NRRD_SUFFIX} (Slicer segmentation), a label map "
                         f"({', '.join(LABELMAP_SUFFIXES)}) or {DICOM_SEG_SUFFIX} (DICOM SEG, for a DICOM series "
                         f"input); got {Path(path).name}.")
    return check_writable(path, "output")


def write_mask(path: Path, mask: np.ndarray, reference: CTVolume, segment_name: str = SEGMENT_NAME) -> Path:
    """Write ``mask`` as a .seg.nrrd segmentation or a label map, chosen by the file name."""
    if str(path).lower().endswith(SEG_NRRD_SUFFIX):
        return write_seg_nrrd(path, {segment_name: mask}, reference)
    if str(path).lower().endswith(DICOM_SEG_SUFFIX):
        from SAMIHSLib.io.dicom_seg import write_dicom_seg

        return write_dicom_seg(path, mask.astype(bool), reference.dicom_files)
    return write_labelmap(path, mask, reference)


def write_ct(path: Path, volume: CTVolume) -> Path:
    """Write the CT itself (int16 HU) with its geometry."""
    import SimpleITK as sitk

    with atomic_output(path) as temporary:
        sitk.WriteImage(volume.to_sitk(volume.array_hu.astype(np.int16)), str(temporary), useCompression=True)
    return Path(path)


def axial_axis(volume: CTVolume) -> int:
    """The array axis (0, 1 or 2 of (k, j, i)) closest to superior-inferior: the slice axis."""
    ijk_axis = int(np.argmax(np.abs(np.asarray(volume.direction_lps)[2, :])))  # column with most S component
    return 2 - ijk_axis


@dataclass
class AxialStack:
    """A volume seen as axial slices, whatever axis it was acquired along: the one path from a
    volume (file or Slicer node) to what the predictor segments.

    ``array_hu`` is (slice, row, column) with the superior-inferior axis first; ``permutation``
    maps stack axes to the volume's (k, j, i) axes. Every conversion between the volume's voxel
    indices and the stack's lives here.
    """

    volume: CTVolume
    permutation: Tuple[int, int, int]

    @classmethod
    def of(cls, volume: CTVolume) -> "AxialStack":
        axis = axial_axis(volume)
        return cls(volume, (axis,) + tuple(a for a in range(3) if a != axis))  # type: ignore[arg-type]

    @property
    def array_hu(self) -> np.ndarray:
        return np.transpose(self.volume.array_hu, self.permutation)

    @property
    def spacing_zyx(self) -> Tuple[float, float, float]:
        """Spacing (mm) in stack order: slice, row, column."""
        return tuple(self.volume.spacing_zyx[a] for a in self.permutation)  # type: ignore[return-value]

    def click_to_stack(self, k: float, column: float, row: float) -> Tuple[int, float, float]:
        """A volume voxel (slice k, column i, row j) -> (stack slice, stack column, stack row)."""
        index_kji = (k, row, column)
        stack = [index_kji[a] for a in self.permutation]
        return int(round(stack[0])), float(stack[2]), float(stack[1])

    def click_to_volume(self, stack_slice: int, column: float, row: float) -> Tuple[int, float, float]:
        """A stack position (slice, column, row) -> the volume's (slice k, column i, row j)."""
        index_kji = [0.0, 0.0, 0.0]
        for value, volume_axis in zip((stack_slice, row, column), self.permutation):
            index_kji[volume_axis] = value
        return int(round(index_kji[0])), float(index_kji[2]), float(index_kji[1])

    def mask_to_stack(self, mask_kji: np.ndarray) -> np.ndarray:
        return np.transpose(mask_kji, self.permutation)

    def mask_to_volume(self, mask_stack: np.ndarray) -> np.ndarray:
        """A stack-ordered mask back in the volume's (k, j, i) order."""
        return np.transpose(mask_stack, np.argsort(self.permutation))

    def extent_to_volume(self, extent_stack: Tuple[slice, slice, slice]) -> Tuple[slice, slice, slice]:
        """A stack-ordered voxel extent (three slices) in the volume's (k, j, i) order."""
        volume_extent = [slice(0, 0)] * 3
        for stack_axis, volume_axis in enumerate(self.permutation):
            volume_extent[volume_axis] = extent_stack[stack_axis]
        return tuple(volume_extent)  # type: ignore[return-value]
