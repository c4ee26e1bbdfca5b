"""Which files and folders of a batch are CT volumes, and what each result is called."""

from pathlib import Path
from typing import List, Sequence

from SAMIHSLib.io.volume_io import PNG_SUFFIXES, VOLUME_SUFFIXES


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
