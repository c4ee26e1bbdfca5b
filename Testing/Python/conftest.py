"""Shared fixtures: the real embedded model, real ct-ich slices from ../shared, phantoms."""

import importlib
import os
from pathlib import Path
from typing import List, Optional, Tuple

# Exported engines go to a cache of the test runs' own (kept between runs, never the user's
# ~/.cache/samihs): set before SAMIHSLib reads it, inherited by the CLI subprocesses.
os.environ.setdefault("SAMIHS_ENGINE_CACHE", str(Path(__file__).resolve().parents[2] / ".pytest_cache" / "samihs-engines"))

from SAMIHSLib.cpu_tuning import tune_process_for_inference  # noqa: E402

tune_process_for_inference()  # the test process is ours, as the CLI's is (before torch loads)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


REPO = Path(__file__).resolve().parents[2]
SHARED_SLICES = REPO.parent / "shared" / "data" / "ct-ich-slices"
SHARED_VOLUMES = REPO.parent / "shared" / "data" / "ct-ich-volumes"
# The shared slices are secondary captures without PixelSpacing; the dataset's native in-plane
# spacing is about 0.4-0.5 mm (data README), so tests use 0.45 mm.
SHARED_PIXEL_SPACING_MM = 0.45

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str, module_level: bool = False):
    """A test's dependency (package, data, program) is missing: a failure in CI (``CI=true``),
    where everything must run, and a visible skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"missing in CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def require(module_name: str, module_level: bool = False):
    """Import an optional test dependency (see :func:`unavailable`)."""
    try:
        return importlib.import_module(module_name)
    except ImportError:
        unavailable(f"{module_name} is not installed (tools/setup_venv.sh --test installs it)", module_level)


@pytest.fixture(scope="session")
def lite_model():
    from SAMIHSLib.models import load_model

    return load_model("lite-base", device="cpu")


@pytest.fixture(scope="session")
def shared_embeddings():
    """Slice embeddings shared by tests whose predictors must be fresh but whose images repeat: the
    cache keys by volume content, model, preprocessing and engine, so each slice is encoded once."""
    from SAMIHSLib.interaction.predictor import SliceEmbeddingCache

    return SliceEmbeddingCache()


@pytest.fixture
def fresh_predictor(lite_model, shared_embeddings):
    """A new lite-base predictor (no volume, no remembered answers, counters at 0) over the shared
    embeddings."""
    from SAMIHSLib.interaction.predictor import SAMIHSPredictor

    return SAMIHSPredictor(lite_model, cache=shared_embeddings)


@pytest.fixture(scope="session")
def real_slices() -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """(name, image in HU (rows, columns), hemorrhage mask) for every shared slice."""
    import SimpleITK as sitk

    if not SHARED_SLICES.is_dir():
        unavailable(f"real ct-ich slices not found at {SHARED_SLICES}")
    slices = []
    for image_path in sorted((SHARED_SLICES / "images").glob("*.dcm")):
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path)))[0].astype(np.int16)
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED_SLICES / "masks" / image_path.name)))[0] > 0
        slices.append((image_path.stem, image, mask))
    assert slices, "the shared data folder has no slices"
    return slices


def real_whole_ct(patient: str, slices: Optional[slice] = None):
    """A whole ct-ich head CT as SAMIHS reads it (``CTVolume``) and its bleed mask (k, j, i);
    only ``slices`` (axial) when given, to keep a test short."""
    import SimpleITK as sitk

    from SAMIHSLib.io.volume_io import CTVolume, read_ct

    image_path = SHARED_VOLUMES / "images" / f"{patient}.nii.gz"
    if not image_path.is_file():
        unavailable(f"the shared whole CTs are not at {SHARED_VOLUMES}")
    volume = read_ct(image_path)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED_VOLUMES / "masks" / f"{patient}.nii.gz"))) > 0
    if slices is not None:
        volume = CTVolume(volume.array_hu[slices], volume.spacing_ijk, volume.origin_lps, volume.direction_lps, volume.source)
        mask = mask[slices]
    return volume, mask


@pytest.fixture(scope="session")
def small_phantom():
    """A fast 3D phantom: 16 slices of 256x256 at 0.9 x 0.9 x 5 mm with two separate bleeds."""
    from SAMIHSLib.phantom import BleedSpec, make_head_phantom

    bleeds = (BleedSpec("intraparenchymal", (26.0, -14.0, 0.0), (13.0, 10.0, 11.0), 66.0),
              BleedSpec("intraparenchymal", (-30.0, 30.0, 0.0), (9.0, 8.0, 9.0), 68.0))
    return make_head_phantom(shape=(16, 256, 256), spacing_zyx=(5.0, 0.9, 0.9), bleeds=bleeds, seed=3)


@pytest.fixture(scope="session")
def web_app_server(tmp_path_factory, small_phantom):
    """One browser-app server for the web tests (started once): the small phantom as a DICOM series
    under ``--data`` and as an NRRD to upload, and ``--save``. Its ``url`` holds the launch token."""
    from types import SimpleNamespace

    from SAMIHSLib.io.volume_io import CTVolume, write_ct
    from dicom_series import write_dicom_series
    from web_server import PHANTOM_SPACING_IJK, WebAppProcess

    folder = tmp_path_factory.mktemp("web_app")
    data = folder / "data"
    data.mkdir()
    series = write_dicom_series(data / "head_series", small_phantom.volume_hu.astype(np.int16), PHANTOM_SPACING_IJK)
    nrrd = write_ct(folder / "head_ct.nrrd", CTVolume(small_phantom.volume_hu, PHANTOM_SPACING_IJK, (0.0, 0.0, 0.0),
                                                      np.eye(3)))
    saved = folder / "saved.seg.nrrd"
    app = WebAppProcess(["--data", str(data), "--save", str(saved)], folder / "web_app.log")
    try:
        yield SimpleNamespace(url=app.wait_for_urls()[0], port=app.port, series=series, nrrd=nrrd, saved=saved)
    finally:
        app.stop()
