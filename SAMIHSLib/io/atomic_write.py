"""Atomic file output: write a temporary file in the target's folder, fsync it, rename it over the
target. A crash or kill mid-write leaves the previous file intact (and at worst a hidden
temporary file), never a truncated result at the final path."""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

# Writers that pick their format from the file name (SimpleITK, pynrrd) need the real suffixes.
_COMPOUND_SUFFIXES = (".seg.nrrd", ".nii.gz", ".tar.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for compound in _COMPOUND_SUFFIXES:
        if name.endswith(compound):
            return path.name[-len(compound):]
    return path.suffix


def _fsync_directory(folder: Path) -> None:
    try:
        descriptor = os.open(str(folder), os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened; rename is still atomic there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _mode_for(target: Path) -> int:
    """The permissions the file would get if written in place: the old file's, else 0666 - umask."""
    if target.exists():
        return target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` (same suffix) to write to; on success it is
    fsynced and renamed to ``path``, on any error removed and ``path`` left untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + _suffix(target),
                                             dir=str(target.parent))
    os.close(descriptor)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        with open(temporary_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary_path, _mode_for(target))  # mkstemp makes 0600; a result keeps normal permissions
        os.replace(temporary_path, target)
        _fsync_directory(target.parent)
    finally:
        if temporary_path.exists():
            temporary_path.unlink()


def write_bytes_atomic(path: Union[str, Path], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def check_writable(path: Union[str, Path], what: str = "output") -> Path:
    """Refuse, before any work, an output path that is a folder or whose folder cannot be written.

    Raises ``ValueError`` (the CLI's one-line error) with the reason; creates nothing."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"The {what} {target} is a folder; give a file name.")
    folder = target.parent
    while not folder.exists():  # the nearest existing ancestor decides whether it can be created
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"The {what} {target} cannot be created: {folder} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ValueError(f"The {what} {target} cannot be written (permission denied).")
    return target
