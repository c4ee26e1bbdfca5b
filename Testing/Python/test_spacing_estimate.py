"""A CT that does not record its pixel size gets one estimated from the head's width, and says so:
a 1 mm guess on a 0.45 mm scan puts every mm rule 2.2x off and every mL 5x."""

import json
from pathlib import Path

import numpy as np
import pytest

from SAMIHSLib.io.spacing_estimate import estimate_pixel_spacing_mm
from SAMIHSLib.io.volume_io import read_ct
from SAMIHSLib.phantom import make_head_phantom

from conftest import SHARED_SLICES, unavailable

REPO = Path(__file__).resolve().parents[2]


def _shared_dicoms():
    files = sorted((SHARED_SLICES / "images").glob("*.dcm"))
    if not files:
        unavailable(f"the shared ct-ich slices are not at {SHARED_SLICES}")
    return files


@pytest.mark.parametrize("pixel_mm", [0.45, 0.9])
def test_the_estimate_is_within_15_percent_on_heads_of_known_size(pixel_mm):
    size = int(round(230.0 / pixel_mm))  # a 23 cm field of view
    phantom = make_head_phantom(shape=(6, size, size), spacing_zyx=(5.0, pixel_mm, pixel_mm))
    assert estimate_pixel_spacing_mm(phantom.volume_hu) == pytest.approx(pixel_mm, rel=0.15)


def test_no_head_no_estimate():
    assert estimate_pixel_spacing_mm(np.full((2, 64, 64), -1000, np.int16)) is None
    assert estimate_pixel_spacing_mm(np.full((2, 64, 64), 40, np.int16)) is None  # 64 px "across": 2.3 mm pixels


def test_secondary_capture_slices_get_a_spacing_near_the_dataset_s_and_say_where_it_came_from():
    """ct-ich's slices have no PixelSpacing; the dataset's scans are about 0.4-0.5 mm."""
    estimates = []
    for path in _shared_dicoms():
        volume = read_ct(path)
        assert volume.spacing_assumed and "estimated from the head's width" in volume.spacing_note
        assert volume.spacing_ijk[0] == volume.spacing_ijk[1]
        estimates.append(volume.spacing_ijk[0])
    assert 0.35 < min(estimates) and max(estimates) < 0.55 and 0.40 < np.mean(estimates) < 0.50
    overridden = read_ct(_shared_dicoms()[0], spacing_override_ijk=(0.45, 0.45, 5.0))
    assert overridden.spacing_ijk == (0.45, 0.45, 5.0) and not overridden.spacing_assumed


def test_the_cli_warns_with_the_estimate_and_reports_it(tmp_path, capsys):
    import SimpleITK as sitk

    from SAMIHSLib.cli import main
    from SAMIHSLib.interaction.regions import deepest_point

    path = _shared_dicoms()[0]
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(SHARED_SLICES / "masks" / path.name)))[0] > 0
    x, y = deepest_point(truth)
    report = tmp_path / "report.json"
    assert main(["segment", str(path), "--point", f"{x:.0f},{y:.0f},0", "--engine", "torch",
                 "-o", str(tmp_path / "out.seg.nrrd"), "--report", str(report)]) == 0
    warning = capsys.readouterr().err
    assert "estimated from the head's width" in warning and "--spacing" in warning
    written = json.loads(report.read_text())
    assert written["spacing_assumed"] and 0.35 < written["spacing_mm"][0] < 0.55
    assert "estimated" in written["spacing_note"]
