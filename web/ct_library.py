"""The CTs the browser app can open: files given at launch, every volume and DICOM series folder
under ``--data DIR``, and uploads (a NRRD/NIfTI/MHA file, or a zipped DICOM series). Every CT is
read by SAMIHSLib (``read_ct``: the same checks and geometry as the CLI) and kept with its DICOM
files, from which a DICOM SEG is written."""

import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from SAMIHSLib.io.volume_files import find_volumes, volume_name
from SAMIHSLib.io.atomic_write import write_bytes_atomic
from SAMIHSLib.io.validation import InputError
from SAMIHSLib.io.volume_io import VOLUME_SUFFIXES

MAX_UPLOAD_BYTES = 1 << 30  # 1 GiB: a head CT series is far smaller
UPLOAD_SUFFIXES = tuple(s for s in VOLUME_SUFFIXES if s != ".dcm") + (".zip",)


class CTLibrary:
    """Named CT sources (name -> file or DICOM folder), in the order they were added."""

    def __init__(self, upload_dir: Path) -> None:
        self.sources: Dict[str, Path] = {}
        self.upload_dir = Path(upload_dir)

    def add(self, path: Path) -> str:
        """Add a CT file or DICOM series folder; returns its (unique) name."""
        name, number = volume_name(Path(path)), 2
        base = name
        while name in self.sources and self.sources[name] != Path(path):
            name, number = f"{base} ({number})", number + 1
        self.sources[name] = Path(path)
        return name

    def add_all(self, paths: Iterable[Path], data_dir: Optional[Path] = None) -> List[str]:
        """Launch files, then the volumes and DICOM series under ``data_dir``."""
        found = [Path(p) for p in paths]
        if data_dir is not None:
            if not Path(data_dir).is_dir():
                raise InputError(f"--data {data_dir} is not a folder.")
            found += find_volumes([Path(data_dir)])
        return [self.add(path) for path in found]

    def add_upload(self, file_name: str, content: bytes) -> str:
        """Save an uploaded CT (a zip is a DICOM series, unpacked safely) and add it."""
        safe_name = Path(file_name).name
        if not safe_name.lower().endswith(UPLOAD_SUFFIXES):
            raise InputError(f"{safe_name}: upload a NRRD, NIfTI or MHA volume, or a .zip of one DICOM series.")
        if len(content) > MAX_UPLOAD_BYTES:
            raise InputError(f"{safe_name} is {len(content) / 1e9:.1f} GB; the limit is {MAX_UPLOAD_BYTES / 1e9:.0f} GB.")
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        target = self.upload_dir / safe_name
        write_bytes_atomic(target, content)
        if safe_name.lower().endswith(".zip"):
            target = unzip_dicom_series(target, self.upload_dir / safe_name[:-4])
        return self.add(target)


def unzip_dicom_series(archive: Path, folder: Path) -> Path:
    """The DICOM files of ``archive`` unpacked flat into ``folder`` (no paths from the archive are
    trusted: names are reduced to their last part, so nothing lands outside ``folder``)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")]
            if sum(m.file_size for m in members) > MAX_UPLOAD_BYTES:
                raise InputError(f"{archive.name} unpacks to more than {MAX_UPLOAD_BYTES / 1e9:.0f} GB.")
            folder.mkdir(parents=True, exist_ok=True)
            for index, member in enumerate(members):
                name = Path(member.filename).name
                name = name if name.lower().endswith(".dcm") else f"{index:05d}_{name}.dcm"
                write_bytes_atomic(folder / name, bundle.read(member))
    except zipfile.BadZipFile as error:
        raise InputError(f"{archive.name} is not a readable zip file: {error}") from error
    if not any(folder.glob("*.dcm")):
        raise InputError(f"{archive.name} holds no files.")
    return folder
