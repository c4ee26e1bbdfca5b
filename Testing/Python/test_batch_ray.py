"""The batch on Ray (a local instance with 2 CPUs, two workers) gives the same files, rows and
resume behaviour as the local batch, and a bad volume fails alone."""

import csv
import json

import numpy as np
import pytest
import slicerio

from conftest import require
from SAMIHSLib.batch import REPORT_NAME, run_batch
from SAMIHSLib.cli import main
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.io.volume_io import CTVolume, write_ct
from SAMIHSLib.interaction.regions import deepest_point, slice_with_most
from SAMIHSLib.phantom import BleedSpec, make_head_phantom

require("ray", module_level=True)
pytestmark = [pytest.mark.scale, pytest.mark.slow]  # ~2 min each on 2 cores: in `pytest -m slow`


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory):
    """Three phantom CTs, a broken file, and a prompts file with a click on each phantom's bleed."""
    folder = tmp_path_factory.mktemp("cts")
    prompts = {}
    for index, centre in enumerate(((24.0, -12.0, 0.0), (-28.0, 26.0, 0.0), (10.0, 30.0, 0.0))):
        phantom = make_head_phantom(shape=(6, 192, 192), spacing_zyx=(5.0, 1.2, 1.2), seed=index,
                                    bleeds=(BleedSpec("intraparenchymal", centre, (11.0, 9.0, 8.0), 66.0),))
        write_ct(folder / f"ct{index}.nrrd", CTVolume(phantom.volume_hu, (1.2, 1.2, 5.0), (0.0, 0.0, 0.0), np.eye(3)))
        k = slice_with_most(phantom.bleed_mask(0))
        prompts[f"ct{index}"] = {"points": [[*deepest_point(phantom.bleed_mask(0)[k]), k]]}
    (folder / "broken.nrrd").write_bytes(b"NRRD0004\ntype: short\nsizes: 10 10\n\nnot really")
    prompts_path = folder.parent / f"{folder.name}_prompts.json"
    prompts_path.write_text(json.dumps(prompts))
    return folder, str(prompts_path)


def _rows(out):
    with open(out / REPORT_NAME, newline="") as handle:
        return {row["volume"]: {k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)}


def _voxels(path):
    return np.asarray(slicerio.read_segmentation(str(path))["voxels"])


def test_ray_batch_equals_local_batch_and_resumes(tmp_path, ct_folder, lite_model):
    ct_folder, prompts = ct_folder
    local = tmp_path / "local"
    run_batch([ct_folder], prompts, local, SAMIHSPredictor(lite_model))
    on_ray = tmp_path / "ray"
    status = main(["batch", str(ct_folder), "--prompts", prompts, "-o", str(on_ray), "--engine", "torch",
                   "--model", "lite-base", "--device", "cpu", "--ray", "local", "--ray-workers", "2"])
    assert status == 1  # the broken volume fails; the others are segmented
    rows = _rows(on_ray)
    assert rows == _rows(local)
    assert [name for name, row in sorted(rows.items()) if row["status"] == "ok"] == ["ct0", "ct1", "ct2"]
    assert "Could not read" in rows["broken"]["reason"]
    for name in ("ct0", "ct1", "ct2"):
        ours = _voxels(on_ray / f"{name}.seg.nrrd")
        assert ours.any() and np.array_equal(ours, _voxels(local / f"{name}.seg.nrrd"))
        assert (on_ray / f"{name}.samihs.json").read_text() == (local / f"{name}.samihs.json").read_text()

    stamps = {name: (on_ray / f"{name}.seg.nrrd").stat().st_mtime_ns for name in ("ct0", "ct1", "ct2")}
    # A rerun redoes only what failed (the same rules as the local batch): finished files stay untouched.
    assert main(["batch", str(ct_folder), "--prompts", prompts, "-o", str(on_ray), "--engine", "torch",
                 "--model", "lite-base", "--device", "cpu", "--ray", "local", "--ray-workers", "2"]) == 1
    assert {name: (on_ray / f"{name}.seg.nrrd").stat().st_mtime_ns for name in stamps} == stamps
