"""Reading refuses short, truncated or absurdly large images before allocating; writing is atomic."""

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
import SimpleITK as sitk

from SAMIHSLib.io.atomic_write import atomic_output, check_writable, write_text_atomic
from SAMIHSLib.io.validation import InputError
from SAMIHSLib.io.volume_io import CTVolume, read_ct, write_seg_nrrd

from dicom_series import write_dicom_series


@pytest.fixture
def small_ct() -> CTVolume:
    rng = np.random.default_rng(0)
    array = rng.integers(-1000, 100, size=(6, 64, 64)).astype(np.int16)
    return CTVolume(array, (0.5, 0.5, 5.0), (0.0, 0.0, 0.0), np.eye(3), "test")


def _truncate(path: Path, keep_fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha"])
def test_truncated_volume_is_refused_not_zero_filled(tmp_path, small_ct, suffix):
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(small_ct.to_sitk(), str(path), useCompression=False)
    assert np.array_equal(read_ct(path).array_hu, small_ct.array_hu)  # the whole file reads back exactly
    _truncate(path, 0.8)
    with pytest.raises(InputError, match="(?i)truncat|could not read"):
        read_ct(path)


def test_truncated_nifti_gz_is_refused(tmp_path, small_ct):
    path = tmp_path / "ct.nii.gz"
    raw = tmp_path / "ct.nii"
    sitk.WriteImage(small_ct.to_sitk(), str(raw), useCompression=False)
    # A complete gzip stream of a short NIfTI: gzip itself is fine, the image inside is short.
    path.write_bytes(gzip.compress(raw.read_bytes()[:-5000]))
    with pytest.raises(InputError, match="truncated"):
        read_ct(path)
    # A gzip stream cut in the middle.
    path.write_bytes(gzip.compress(raw.read_bytes())[:-400])
    with pytest.raises(InputError, match="truncated"):
        read_ct(path)


def test_huge_declared_size_is_refused_before_allocating(tmp_path, small_ct):
    path = tmp_path / "huge.nii"
    sitk.WriteImage(small_ct.to_sitk(), str(path), useCompression=False)
    header = bytearray(path.read_bytes()[:352])
    header[40:56] = np.array([3, 32767, 32767, 20, 1, 1, 1, 1], dtype="<i2").tobytes()
    path.write_bytes(bytes(header) + b"\0" * 1000)  # a 1 KB file declaring 32767 x 32767 x 20
    started = time.perf_counter()
    with pytest.raises(InputError, match="declares 32767 x 32767 x 20"):
        read_ct(path)
    assert time.perf_counter() - started < 5  # refused from the header, nothing allocated

    nrrd_path = tmp_path / "huge.nrrd"
    nrrd_path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 100000 100000 1\nencoding: raw\nendian: little\n\n" + b"\0" * 64)
    with pytest.raises(InputError, match="declares 100000 x 100000 x 1"):
        read_ct(nrrd_path)


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path, small_ct):
    write_dicom_series(tmp_path / "complete", small_ct.array_hu)
    assert np.array_equal(read_ct(tmp_path / "complete").array_hu, small_ct.array_hu)
    write_dicom_series(tmp_path / "gap", small_ct.array_hu, skip=3)
    with pytest.raises(InputError, match="slice is missing"):
        read_ct(tmp_path / "gap")


def test_output_checks_refuse_folders_and_unwritable_places(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        check_writable(tmp_path, "output")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_writable(blocker / "sub" / "out.nrrd", "output")
    assert not (blocker / "sub").exists()


def test_failed_write_leaves_the_previous_file(tmp_path, small_ct):
    target = write_text_atomic(tmp_path / "report.json", "previous")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left
    seg = write_seg_nrrd(tmp_path / "a.seg.nrrd", {"Hemorrhage": small_ct.array_hu > 0}, small_ct)
    assert seg.stat().st_size > 0 and [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_killed_writer_leaves_the_previous_file_intact(tmp_path):
    """A real writer process is killed (SIGKILL) in the middle of writing 200 MB over a result."""
    target = tmp_path / "result.seg.nrrd"
    target.write_bytes(b"previous valid result")
    script = textwrap.dedent(f"""
        import sys, time
        from SAMIHSLib.io.atomic_write import atomic_output
        with atomic_output({str(target)!r}) as temporary:
            with open(temporary, "wb") as handle:
                for _ in range(200):
                    handle.write(b"x" * (1 << 20))
                    handle.flush()
                    print("chunk", flush=True)
                    time.sleep(0.05)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(5):  # wait until it is really writing
        assert writer.stdout.readline().strip() == "chunk"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert target.read_bytes() == b"previous valid result"


def test_atomic_writes_keep_normal_permissions(tmp_path):
    fresh = write_text_atomic(tmp_path / "new.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    existing = tmp_path / "shared.json"
    existing.write_text("old")
    existing.chmod(0o640)
    write_text_atomic(existing, "new")
    assert existing.stat().st_mode & 0o777 == 0o640 and existing.read_text() == "new"


# Writes that need not be atomic, and why: an append-only training log (a killed run leaves the rows
# it wrote, each whole), files written inside a folder that is renamed into place as a whole, and
# the installer's temporary requirements file.
NOT_ATOMIC_ON_PURPOSE = {
    ("training/trainer.py", "open"): "train_log.csv is appended row by row while training runs",
    ("SAMIHSLib/engines/onnx_graphs.py", "write_text"): "written into a staging folder renamed into place whole",
    ("SAMIHS/SAMIHSSlicer/dependencies.py", "fdopen"): "a temporary constraints file for pip, removed after",
}
WRITE_CALLS = {"write_text", "write_bytes", "save", "savez", "savez_compressed", "open", "fdopen"}


def _unguarded_writes():
    """(file, call, line) of every call in shipped code that writes a file outside an
    ``atomic_output`` block and outside the helpers of atomic_write.py."""
    import ast

    found = []
    for folder in ("SAMIHSLib", "SAMIHS", "web", "training", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative == "SAMIHSLib/io/atomic_write.py":
                continue
            tree = ast.parse(path.read_text())
            guarded = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.With) and any("atomic_output" in ast.unparse(item.context_expr)
                                                      for item in node.items):
                    guarded |= {id(inner) for inner in ast.walk(node)}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or id(node) in guarded:
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name not in WRITE_CALLS:
                    continue
                modes = node.args[1:] + [k.value for k in node.keywords if k.arg == "mode"]
                if name in ("open", "fdopen") and not any(
                        isinstance(c, ast.Constant) and isinstance(c.value, str) and set(c.value) & set("wax")
                        for mode in modes for c in ast.walk(mode)):
                    continue  # reading
                if name == "save" and not ast.unparse(node.func).startswith(("torch.", "np.", "numpy.")) \
                        and "sheet" not in ast.unparse(node.func) and "image" not in ast.unparse(node.func):
                    continue  # e.g. a Qt settings or MRML save, not a file write by us
                if (relative, name) in NOT_ATOMIC_ON_PURPOSE:
                    continue
                found.append((relative, name, node.lineno))
    return found


def test_every_writer_of_a_user_visible_file_goes_through_atomic_output():
    assert _unguarded_writes() == []


def test_a_real_result_writer_killed_mid_write_leaves_the_previous_result(tmp_path):
    """SAMIHS's own .seg.nrrd writer, on a volume large enough to take a while, killed (SIGKILL)
    once its temporary file is being written: the previous result is intact."""
    target = tmp_path / "result.seg.nrrd"
    target.write_bytes(b"previous valid result")
    script = textwrap.dedent(f"""
        import numpy as np
        from SAMIHSLib.io.volume_io import CTVolume, write_seg_nrrd
        rng = np.random.default_rng(0)
        volume = CTVolume(np.zeros((300, 512, 512), np.int16), (0.45, 0.45, 1.0), (0, 0, 0), np.eye(3))
        print("writing", flush=True)
        write_seg_nrrd({str(target)!r}, {{"Hemorrhage": rng.random((300, 512, 512)) > 0.5}}, volume)
        print("done", flush=True)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert writer.stdout.readline().strip() == "writing"
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".result.seg.nrrd.") and p.stat().st_size > 0
                                             for p in tmp_path.iterdir()):
        assert writer.poll() is None, "the writer finished before it could be caught writing"
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert target.read_bytes() == b"previous valid result"
