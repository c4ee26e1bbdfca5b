"""A trained model written as a SAMIHS checkpoint that records its recipe, data and metrics."""

import time
from pathlib import Path
from typing import Dict, Optional

from SAMIHSLib.models import save_finetuned_checkpoint
from SAMIHSLib.models.sam import SegmentAnythingModel

from .training_config import TrainingConfig


def export_checkpoint(model: SegmentAnythingModel, config: TrainingConfig, path: Path,
                      metrics: Optional[Dict[str, object]] = None, data_description: str = "") -> Path:
    """Save the trained adapters + prompt encoder + decoder as our checkpoint, with provenance."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    provenance = {"training_config": config.to_dict(), "commit": commit, "data": data_description,
                  "metrics": metrics or {}, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return save_finetuned_checkpoint(model, Path(path), provenance)
