"""The samihs command line: geometry kept exactly, Slicer-readable output, clear errors."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
import torch

from SAMIHSLib.cli import main
from SAMIHSLib.io.report import SegmentationReport
from SAMIHSLib.phantom import oblique_direction
from SAMIHSLib.io.volume_io import CTVolume, read_ct, write_ct
from SAMIHSLib.interaction.regions import slice_with_most
from SAMIHSLib.metrics import dice


@pytest.fixture
def oblique_nrrd(tmp_path, small_phantom):
    volume = CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (-100.0, 80.0, -40.0), oblique_direction(12.0))
    return write_ct(tmp_path / "oblique_ct.nrrd", volume), volume


def _click_ijk(phantom, bleed=0):
    truth = phantom.bleed_mask(bleed)
    k = slice_with_most(truth)
    rows, cols = np.nonzero(truth[k])
    return int(cols.mean()), int(rows.mean()), k


def test_segment_keeps_oblique_geometry_and_writes_slicer_segmentation(tmp_path, oblique_nrrd, small_phantom):
    path, volume = oblique_nrrd
    i, j, k = _click_ijk(small_phantom)
    labelmap, seg, report = tmp_path / "out.nii.gz", tmp_path / "out.seg.nrrd", tmp_path / "r.json"
    assert main(["segment", str(path), "--point", f"{i},{j},{k}", "--no-propagate", "-o", str(labelmap),
                 "--report", str(report), "--device", "cpu"]) == 0
    written = sitk.ReadImage(str(labelmap))
    assert np.allclose(written.GetDirection(), np.asarray(volume.direction_lps).ravel(), atol=1e-6)
    assert np.allclose(written.GetOrigin(), volume.origin_lps, atol=1e-4)
    assert np.allclose(written.GetSpacing(), volume.spacing_ijk, atol=1e-6)
    mask = sitk.GetArrayFromImage(written) > 0
    assert mask[k].sum() > 50 and mask.sum() == mask[k].sum()  # clicked slice only
    truth = small_phantom.bleed_mask(0)[k]
    assert dice(mask[k], truth) >= 0.8 and dice(mask[k].T, truth) < 0.5  # on the bleed, rows and columns not swapped
    written_report = json.loads(report.read_text())
    assert list(written_report) == list(SegmentationReport("").to_dict())  # the one report schema
    assert written_report["measurements"]["volume_ml"] > 0
    assert written_report["filled_slices"] == written_report["clicked_slices"] == [k]
    # auto runs lite-base exactly: bf16 moved its accuracy table (training/results/precision)
    assert (written_report["engine"], written_report["precision"]) == ("openvino", "fp32")

    assert main(["segment", str(path), "--point", f"{i},{j},{k}", "--no-propagate", "-o", str(seg)]) == 0
    segmentation = slicerio.read_segmentation(str(seg))
    assert [s["name"] for s in segmentation["segments"]] == ["Hemorrhage"]
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"])
    assert np.allclose(ijk_to_lps, volume.ijk_to_lps_matrix(), atol=1e-4)
    voxels = np.asarray(segmentation["voxels"])  # slicerio gives (i, j, k)
    assert np.array_equal(voxels.transpose(2, 1, 0) > 0, mask)


def test_ras_click_lands_on_the_same_voxel_as_ijk(tmp_path, oblique_nrrd, small_phantom):
    path, volume = oblique_nrrd
    i, j, k = _click_ijk(small_phantom)
    r, a, s = (volume.ijk_to_ras_matrix() @ np.array([i, j, k, 1.0]))[:3]
    by_ras, by_ijk = tmp_path / "ras.nrrd", tmp_path / "ijk.nrrd"
    assert main(["segment", str(path), f"--point={r},{a},{s}", "--coords", "ras", "--no-propagate",
                 "-o", str(by_ras)]) == 0
    assert main(["segment", str(path), "--point", f"{i},{j},{k}", "--no-propagate", "-o", str(by_ijk)]) == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(by_ras))),
                          sitk.GetArrayFromImage(sitk.ReadImage(str(by_ijk))))


def _refused(capsys, tmp_path, args, message):
    output = tmp_path / "never.seg.nrrd"
    assert main(args + ["-o", str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_bad_inputs_give_clear_errors_and_write_nothing(tmp_path, capsys, oblique_nrrd):
    path, _ = oblique_nrrd
    nan = sitk.GetImageFromArray(np.full((4, 16, 16), np.nan, dtype=np.float32))
    sitk.WriteImage(nan, str(tmp_path / "nan.nrrd"))
    four_d = sitk.GetImageFromArray(np.zeros((2, 3, 16, 16), dtype=np.int16), isVector=False)
    sitk.WriteImage(four_d, str(tmp_path / "4d.nii.gz"))
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    _refused(capsys, tmp_path, ["segment", str(tmp_path / "nan.nrrd"), "--point", "1,1,1"], "NaN")
    _refused(capsys, tmp_path, ["segment", str(tmp_path / "4d.nii.gz"), "--point", "1,1,1"], "4D")
    _refused(capsys, tmp_path, ["segment", str(tmp_path / "empty.nii.gz"), "--point", "1,1,1"], "empty")
    _refused(capsys, tmp_path, ["segment", str(tmp_path / "missing.nrrd"), "--point", "1,1,1"], "not found")
    _refused(capsys, tmp_path, ["segment", str(path), "--point", "900,10,3"], "outside the image")
    _refused(capsys, tmp_path, ["segment", str(path), "--point", "10,10,99"], "outside the volume")
    _refused(capsys, tmp_path, ["segment", str(path), "--point", "10,10,3", "--model", "vit_z"], "Unknown model")
    _refused(capsys, tmp_path, ["segment", str(path), "--point", "10,10,3", "--threads", "-2"], "--threads")


def test_openvino_engine_with_one_thread_matches_the_default(tmp_path, oblique_nrrd, small_phantom):
    from conftest import require

    require("openvino")
    path, _ = oblique_nrrd
    i, j, k = _click_ijk(small_phantom)
    masks = []
    threads = torch.get_num_threads()
    try:
        for name, extra in (("torch.nii.gz", ["--engine", "torch"]),
                            ("openvino.nii.gz", ["--engine", "openvino", "--threads", "1"])):
            assert main(["segment", str(path), "--point", f"{i},{j},{k}", "--no-propagate", "-o",
                         str(tmp_path / name), "--device", "cpu"] + extra) == 0
            masks.append(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / name))) > 0)
    finally:  # --threads sets the process's torch threads (the CLI owns its process; this test does not)
        torch.set_num_threads(threads)
    overlap = 2 * (masks[0] & masks[1]).sum() / (masks[0].sum() + masks[1].sum())
    assert masks[0].sum() > 50 and overlap >= 0.99


def test_mr_like_and_rgb_images_are_not_taken_for_ct(tmp_path):
    from PIL import Image

    from SAMIHSLib.io.validation import InputError

    mr = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 3000, (8, 32, 32)).astype(np.int16))
    sitk.WriteImage(mr, str(tmp_path / "mr.nrrd"))
    with pytest.raises(InputError, match="does not look like CT"):
        read_ct(tmp_path / "mr.nrrd")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="colour"):
        read_ct(tmp_path / "rgb.png")


@pytest.mark.slow  # ~30-45 s on 2 cores: in `pytest -m slow` (CI runs it)
def test_demo_writes_segmentation_overview_and_volume(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "demo_report.json").read_text())
    assert report["dice_vs_truth"] >= 0.8
    assert abs(report["measurements"]["volume_ml"] - report["truth_volume_ml"]) < 0.25 * report["truth_volume_ml"]
    assert "mL" in printed and (tmp_path / "demo_overview.png").stat().st_size > 10_000
    assert slicerio.read_segmentation(str(tmp_path / "demo_hemorrhage.seg.nrrd"))["segments"][0]["name"] == "Hemorrhage"


def test_output_problems_are_refused_before_any_work(tmp_path, capsys, oblique_nrrd):
    path, _ = oblique_nrrd
    folder = tmp_path / "a_folder.seg.nrrd"
    folder.mkdir()
    cases = [(["-o", str(folder)], "is a folder"),
             (["-o", str(tmp_path / "out.txt")], "Write the result as .seg.nrrd"),
             (["-o", str(tmp_path / "ok.seg.nrrd"), "--report", str(tmp_path)], "The report"),
             (["-o", str(path / "x.nrrd")], "is a file, not a folder")]
    for extra, message in cases:
        # A bogus model would fail only after reading the CT: the output check comes first.
        assert main(["segment", str(path), "--point", "10,10,3", "--model", "no_such_model"] + extra) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
    assert not (tmp_path / "ok.seg.nrrd").exists()


def test_corrupt_checkpoint_is_one_line_without_unsafe_advice(tmp_path, capsys, oblique_nrrd):
    import pickle

    path, _ = oblique_nrrd
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip")
    pickled_code = tmp_path / "code.pth"
    pickled_code.write_bytes(pickle.dumps(print))  # a pickle that would import a callable
    for checkpoint in (corrupt, pickled_code):
        assert main(["segment", str(path), "--point", "10,10,3", "--model", str(checkpoint),
                     "-o", str(tmp_path / "o.seg.nrrd")]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "corrupt or not a PyTorch weights file" in error, error
        assert "weights_only=False" not in error
        assert sorted(p.name for p in tmp_path.iterdir()) == ["code.pth", "corrupt.pth", "oblique_ct.nrrd"]  # no output


def test_a_click_on_no_bleed_is_said_in_words_and_box_alone_works(tmp_path, capsys, oblique_nrrd, small_phantom):
    path, _ = oblique_nrrd
    i, j, k = _click_ijk(small_phantom)
    air = tmp_path / "air.seg.nrrd"
    assert main(["segment", str(path), "--point", f"3,3,{k}", "--no-propagate", "-o", str(air),
                 "--report", str(tmp_path / "air.json")]) == 0
    captured = capsys.readouterr()
    assert "no bleed found at the click: HU -" in captured.err
    assert "No hemorrhage segmented" in captured.out and "-1--1" not in captured.out
    assert json.loads((tmp_path / "air.json").read_text())["reason"].startswith("no bleed found")
    assert not np.asarray(slicerio.read_segmentation(str(air))["voxels"]).any()

    truth = small_phantom.bleed_mask(0)[k]
    rows, cols = np.nonzero(truth)
    box = f"{cols.min() - 2},{rows.min() - 2},{cols.max() + 2},{rows.max() + 2},{k}"
    assert main(["segment", str(path), "--box", box, "--no-propagate", "-o", str(tmp_path / "box.nii.gz")]) == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "box.nii.gz")))[k] > 0
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) >= 0.7
