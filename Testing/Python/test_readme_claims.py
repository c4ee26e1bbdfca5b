"""What the README promises about measurements and inputs, each checked on the thing itself: ABC/2,
volume, largest axial area and slice range on an analytic ellipsoid; the voxel budget
(``SAMIHS_MAX_VOXELS``); several DICOM series in one folder and constant images refused; a
``--negative`` click on the command line; a coronally acquired volume segmented on its axial slices
and written back on its own grid."""

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import require
from SAMIHSLib.cli import main
from SAMIHSLib.interaction.measurements import measure_hemorrhage
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most
from SAMIHSLib.io.validation import InputError
from SAMIHSLib.io.volume_io import CTVolume, read_ct, write_ct
from SAMIHSLib.metrics import dice


def _ellipsoid(semi_axes_mm, spacing_zyx, shape):
    """A (k, j, i) mask of the ellipsoid centred in ``shape`` with the given semi-axes (z, y, x), mm."""
    grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing_zyx)], indexing="ij")
    return sum((g / a) ** 2 for g, a in zip(grids, semi_axes_mm)) <= 1.0


def test_measurements_of_an_analytic_ellipsoid():
    semi_z, semi_y, semi_x = 20.0, 15.0, 25.0  # mm; a 31 mL ellipsoid
    spacing = (5.0, 0.5, 0.5)
    mask = _ellipsoid((semi_z, semi_y, semi_x), spacing, (11, 80, 120))
    measured = measure_hemorrhage(mask, spacing)
    assert measured.volume_ml == pytest.approx(4.0 / 3.0 * np.pi * semi_x * semi_y * semi_z / 1000.0, rel=0.05)
    # ABC/2: A and B the largest axial diameters, C the bleed's slices x thickness (7 slices of 5 mm here)
    slices = int(mask.any(axis=(1, 2)).sum())
    assert slices == 7 and (measured.first_slice, measured.last_slice, measured.num_slices) == (2, 8, 7)
    expected_abc2 = (2 * semi_x) * (2 * semi_y) * (slices * spacing[0]) / 2.0 / 1000.0
    assert measured.abc_over_2_ml == pytest.approx(expected_abc2, rel=0.03)
    assert measured.max_area_slice == 5  # the centre slice
    assert measured.max_axial_area_mm2 == pytest.approx(np.pi * semi_x * semi_y, rel=0.02)
    empty = measure_hemorrhage(np.zeros_like(mask), spacing)
    assert (empty.volume_ml, empty.num_slices, empty.first_slice) == (0.0, 0, -1)


def test_the_voxel_budget_refuses_a_large_header_and_the_variable_raises_it(tmp_path, monkeypatch, small_phantom):
    path = write_ct(tmp_path / "ct.nrrd", CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (0, 0, 0), np.eye(3)))
    voxels = small_phantom.volume_hu.size  # 16 x 256 x 256
    monkeypatch.setenv("SAMIHS_MAX_VOXELS", str(voxels - 1))
    with pytest.raises(InputError, match="SAMIHS_MAX_VOXELS"):
        read_ct(path)
    monkeypatch.setenv("SAMIHS_MAX_VOXELS", str(voxels))
    assert read_ct(path).array_hu.shape == small_phantom.volume_hu.shape


def test_a_folder_with_two_dicom_series_is_refused(tmp_path, small_phantom):
    require("pydicom")
    from dicom_series import write_dicom_series

    first = write_dicom_series(tmp_path / "one", small_phantom.volume_hu[:4].astype(np.int16))
    second = write_dicom_series(tmp_path / "two", small_phantom.volume_hu[4:8].astype(np.int16))
    for path in second.iterdir():
        shutil.move(str(path), str(first / f"b_{path.name}"))
    with pytest.raises(InputError, match="2 DICOM series"):
        read_ct(first)


def test_a_constant_image_is_refused(tmp_path):
    path = write_ct(tmp_path / "flat.nrrd", CTVolume(np.full((3, 64, 64), 40, np.int16), (1.0, 1.0, 5.0), (0, 0, 0),
                                                      np.eye(3)))
    with pytest.raises(InputError, match="constant"):
        read_ct(path)


def test_a_negative_click_on_the_command_line_takes_away_the_part_it_is_on(tmp_path, small_phantom):
    truth = small_phantom.bleed_mask(0)
    k = slice_with_most(truth)
    x, y = (int(v) for v in deepest_point(truth[k]))
    path = write_ct(tmp_path / "ct.nrrd", CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (0, 0, 0), np.eye(3)))
    rows, cols = np.nonzero(truth[k])
    edge_x, edge_y = int(cols.max()) - 2, int(rows[cols == cols.max()].mean())  # inside, at the right edge
    masks = []
    for name, extra in (("plain.nii.gz", []), ("negative.nii.gz", [f"--negative={edge_x},{edge_y},{k}"])):
        assert main(["segment", str(path), "--point", f"{x},{y},{k}", "--no-propagate",
                     "-o", str(tmp_path / name)] + extra) == 0
        masks.append(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / name)))[k] > 0)
    plain, negative = masks
    assert plain[edge_y, edge_x] and not negative[edge_y, edge_x]
    assert negative[y, x] and (negative & ~plain).sum() == 0  # only taken away, never added
    assert 0.5 * plain.sum() < negative.sum() < plain.sum()  # a part, not the bleed


def test_a_coronal_volume_is_segmented_on_its_axial_slices_and_written_on_its_own_grid(tmp_path, small_phantom):
    axial = small_phantom.volume_hu  # (k, j, i): S, P, L
    coronal_array = np.ascontiguousarray(np.transpose(axial, (1, 0, 2)))  # [j, k, i]: slices front to back
    # Columns: the coronal file's i runs along axial i (L), its j along axial k (S), its k along axial j (P).
    direction = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    coronal = CTVolume(coronal_array.astype(np.int16), (0.9, 5.0, 0.9), (-110.0, 95.0, -30.0), direction)
    path = write_ct(tmp_path / "coronal.nrrd", coronal)
    truth = small_phantom.bleed_mask(0)
    k = slice_with_most(truth)
    x, y = (int(v) for v in deepest_point(truth[k]))
    out = tmp_path / "bleed.nii.gz"
    assert main(["segment", str(path), "--point", f"{x},{k},{y}", "-o", str(out)]) == 0  # (i, j, k) of the file
    written = sitk.ReadImage(str(out))
    assert np.allclose(written.GetDirection(), direction.ravel(), atol=1e-6)
    mask = sitk.GetArrayFromImage(written) > 0
    assert mask.shape == coronal_array.shape
    assert dice(mask, np.transpose(truth, (1, 0, 2))) >= 0.75
