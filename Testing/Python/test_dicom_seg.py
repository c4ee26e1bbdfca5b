"""DICOM in, DICOM SEG out: a SEG written by the CLI from a DICOM series references the source
instances, is coded as hemorrhage, and reads back (highdicom; pydicom) onto the same voxels as the
.seg.nrrd written beside it."""

import numpy as np
import pydicom
import pytest
import slicerio

from SAMIHSLib.cli import main
from SAMIHSLib.metrics import dice
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most
from SAMIHSLib.io.volume_io import read_ct

from conftest import require
from dicom_series import write_dicom_series


def test_dicom_seg_from_a_dicom_series_round_trips_onto_the_same_voxels(tmp_path, small_phantom, capsys):
    require("highdicom")
    from SAMIHSLib.io.dicom_seg import HEMORRHAGE_CODE, read_dicom_seg_mask

    series = write_dicom_series(tmp_path / "ct", small_phantom.volume_hu.astype(np.int16), (0.9, 0.9, 5.0))
    truth = small_phantom.bleed_mask(0)
    k = slice_with_most(truth)
    x, y = deepest_point(truth[k])
    seg_path, nrrd_path = tmp_path / "bleed.dcm", tmp_path / "bleed.seg.nrrd"
    assert main(["segment", str(series), "--point", f"{x},{y},{k}", "-o", str(nrrd_path),
                 "--dicom-seg", str(seg_path)]) == 0
    volume = read_ct(series)
    dataset = pydicom.dcmread(str(seg_path))
    assert dataset.Modality == "SEG" and dataset.SegmentSequence[0].SegmentLabel == "Hemorrhage"
    coded = dataset.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    assert (coded.CodeValue, coded.CodingSchemeDesignator) == HEMORRHAGE_CODE[:2]
    assert dataset.SegmentSequence[0].SegmentAlgorithmName == "SAMIHS"
    referenced = {item.ReferencedSOPInstanceUID for item in dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in volume.dicom_files}
    from_seg = read_dicom_seg_mask(seg_path, volume.dicom_files)
    from_nrrd = np.asarray(slicerio.read_segmentation(str(nrrd_path))["voxels"]).transpose(2, 1, 0) > 0
    assert from_seg.shape == truth.shape and np.array_equal(from_seg, from_nrrd)
    assert dice(from_seg, truth) >= 0.8


def test_dicom_seg_needs_a_dicom_series_input(tmp_path, small_phantom, capsys):
    from SAMIHSLib.io.volume_io import CTVolume, write_ct

    ct = write_ct(tmp_path / "ct.nrrd", CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (0, 0, 0), np.eye(3)))
    assert main(["segment", str(ct), "--point", "10,10,3", "-o", str(tmp_path / "x.dcm")]) == 2
    assert "give a DICOM series folder" in capsys.readouterr().err
    assert not (tmp_path / "x.dcm").exists()


@pytest.mark.slow  # ~30-45 s on 2 cores: in `pytest -m slow` (CI runs it)
def test_batch_writes_dicom_seg_for_a_dicom_series(tmp_path, small_phantom):
    require("highdicom")
    import json

    from SAMIHSLib.io.dicom_seg import read_dicom_seg_mask

    inputs = tmp_path / "in"
    inputs.mkdir()
    series = write_dicom_series(inputs / "case01", small_phantom.volume_hu.astype(np.int16), (0.9, 0.9, 5.0))
    truth = small_phantom.bleed_mask(0)
    k = slice_with_most(truth)
    x, y = deepest_point(truth[k])
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"case01": {"points": [[x, y, k]]}}))
    assert main(["batch", str(inputs), "--prompts", str(prompts), "-o", str(tmp_path / "out"), "--dicom-seg"]) == 0
    from_seg = read_dicom_seg_mask(tmp_path / "out" / "case01.seg.dcm", read_ct(series).dicom_files)
    from_nrrd = np.asarray(slicerio.read_segmentation(str(tmp_path / "out" / "case01.seg.nrrd"))["voxels"])
    assert np.array_equal(from_seg, from_nrrd.transpose(2, 1, 0) > 0) and dice(from_seg, truth) >= 0.8
