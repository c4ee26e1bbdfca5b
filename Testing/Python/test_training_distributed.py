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


def _train(tmp_path: Path, name: str, processes: int) -> Path:
    out = tmp_path / name
    config = {"name": name, "adapter_positions": [], "cache_embeddings": True, "augmented_copies": 1,
              "augment": False, "phantom_cases": 2, "batch_size": 2, "max_steps": 16, "learning_rate": 0.0005,
              "extra_click_probability": 0.0, "device": "cpu", "seed": 3, "output_dir": str(out)}
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
