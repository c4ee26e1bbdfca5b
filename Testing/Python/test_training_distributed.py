"""torchrun: two CPU processes (gloo) train a few DistributedDataParallel steps; the loss falls,
rank 0 alone writes the log and a checkpoint in the same format as a single-process run."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from SAMIHSLib.models import load_model

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.scale, pytest.mark.slow]  # ~2 min each on 2 cores: in `pytest -m slow`


def _train(tmp_path: Path, name: str, processes: int, **overrides) -> Path:
    out = tmp_path / name
    config = {"name": name, "adapter_positions": [], "cache_embeddings": True, "augmented_copies": 1,
              "augment": False, "phantom_cases": 2, "batch_size": 2, "max_steps": 16, "learning_rate": 0.0005,
              "extra_click_probability": 0.0, "device": "cpu", "seed": 3, "output_dir": str(out), **overrides}
    config_path = tmp_path / f"{name}.json"
    config_path.write_text(json.dumps(config))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    result = subprocess.run(launcher + ["-m", "training", "train", "--config", str(config_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=600,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _header(path: Path) -> dict:
    return json.loads(torch.load(path, weights_only=True)["header_json"])


def test_two_process_training_lowers_the_loss_and_writes_the_same_checkpoint_format(tmp_path):
    distributed = _train(tmp_path, "ddp", 2)
    with open(distributed / "train_log.csv", newline="") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 16  # one log, from rank 0
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses
    single = _train(tmp_path, "single", 1)
    ours, reference = distributed / "model.samihs.pt", single / "model.samihs.pt"
    assert _header(ours)["provenance"]["metrics"]["processes"] == 2
    assert _header(reference)["provenance"]["metrics"]["processes"] == 1
    assert set(_header(ours)) == set(_header(reference))
    a, b = load_model(ours, device="cpu").state_dict(), load_model(reference, device="cpu").state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("mask_decoder."))  # both trained, differently


def test_two_processes_of_batch_1_take_the_step_of_one_process_of_batch_2(tmp_path):
    """DistributedDataParallel averages the gradients: with every random choice switched off (the
    deepest click, no augmentation, boxes or pasting), two processes each training on one of two
    real slices end where one process training on both as a batch of 2 ends. Without the average,
    each process would step on its own slice alone."""
    import shutil

    from conftest import SHARED_SLICES, unavailable

    if not SHARED_SLICES.is_dir():
        unavailable("real ct-ich slices not available")
    data = tmp_path / "two_slices"
    for name in ("066_19.dcm", "075_30.dcm"):
        for part in ("images", "masks"):
            (data / part).mkdir(parents=True, exist_ok=True)
            shutil.copy(SHARED_SLICES / part / name, data / part / name)
    fixed = {"phantom_cases": 0, "datasets": [{"kind": "folder", "root": str(data)}], "max_steps": 3,
             "deepest_click_probability": 1.0, "learning_rate": 0.001}
    distributed = torch.load(_train(tmp_path, "ddp_b1", 2, batch_size=1, **fixed) / "last.pt", weights_only=True)
    single = torch.load(_train(tmp_path, "single_b2", 1, batch_size=2, **fixed) / "last.pt", weights_only=True)
    start = load_model("lite-base", device="cpu").state_dict()
    trained = [k for k in single["model"] if k.startswith("mask_decoder.") and
               not torch.equal(single["model"][k], start[k])]
    assert trained  # the step moved the decoder
    for key in trained:
        assert torch.allclose(distributed["model"][key], single["model"][key], atol=1e-5, rtol=1e-4), key
    assert distributed["losses"] == pytest.approx(single["losses"], rel=1e-4)
