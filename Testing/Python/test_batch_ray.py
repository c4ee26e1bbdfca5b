"""The batch on Ray (a local instance with 2 CPUs, two workers) gives the same files, rows and
resume behaviour as the local batch, and a bad volume fails alone."""

import csv
import json
import os
import signal
import time
from pathlib import Path

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


def _busy_worker_pids():
    """Ray worker processes running ``VolumeWorker.process`` now (Ray titles a busy actor's process so)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ray::VolumeWorker.process" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue  # the process ended meanwhile
    return pids


def test_a_ray_worker_killed_mid_volume_fails_that_volume_alone_and_is_replaced(tmp_path, ct_folder):
    """SIGKILL, as the kernel's out-of-memory killer sends it, to a worker while it segments: that
    volume's row says the worker died, a new worker takes the rest, and a rerun redoes that volume."""
    from SAMIHSLib.batch_ray import run_batch_on_ray

    ct_folder, prompts = ct_folder
    out, killed = tmp_path / "ray", []

    def kill_a_busy_worker(done, total, name):
        deadline = time.time() + 120
        while not killed and done >= 1 and time.time() < deadline:
            busy = _busy_worker_pids()
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            else:
                time.sleep(0.05)  # a poll interval while the next volume starts

    rows = run_batch_on_ray([ct_folder], prompts, out, "lite-base", "cpu", "torch", "local", workers=2,
                            progress=kill_a_busy_worker)
    assert killed
    died = [name for name, row in rows.items() if row["reason"].startswith("Ray worker died")]
    assert len(died) == 1 and rows[died[0]]["status"] == "failed" and died[0] != "broken"
    assert sorted(name for name, row in rows.items() if row["status"] == "ok") == \
        sorted({"ct0", "ct1", "ct2"} - set(died))  # the replacement finished the others
    assert not (out / f"{died[0]}.seg.nrrd").exists()  # nothing half-written for the killed volume
    again = run_batch_on_ray([ct_folder], prompts, out, "lite-base", "cpu", "torch", "local", workers=2)
    assert again[died[0]]["status"] == "ok"
