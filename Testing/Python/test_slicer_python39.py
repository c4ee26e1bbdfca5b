"""Slicer 5.8 runs Python 3.9: every file the extension ships compiles under a real 3.9, and pip
for 3.9 resolves every requirement the installer asks for (pyenv's 3.9.18; a failure in CI when
absent)."""

import json
import os
import shlex
import shutil
import subprocess

import pytest

from conftest import REPO, unavailable

SHIPPED = sorted((REPO / "SAMIHS").rglob("*.py")) + sorted((REPO / "SAMIHSLib").rglob("*.py"))


def python39() -> list:
    environment = dict(os.environ, PYENV_VERSION="3.9.18")
    for command in (["python3.9"], ["pyenv", "exec", "python3.9"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run(command + ["-c", "import sys; print(sys.version_info[:2])"], env=environment,
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 9)":
            return command
    unavailable("no Python 3.9 here (pyenv install 3.9.18)")


def run39(arguments: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(python39() + arguments, env=dict(os.environ, PYENV_VERSION="3.9.18"),
                          capture_output=True, text=True, **kwargs)


def test_every_shipped_file_compiles_under_python_3_9():
    code = "import sys\nfor path in sys.argv[1:]:\n    compile(open(path, encoding='utf-8').read(), path, 'exec')\n"
    result = run39(["-c", code] + [str(p) for p in SHIPPED])
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_pip_for_python_3_9_resolves_every_install_call(tmp_path):
    """Exactly the argument strings the installer passes to pip (PyTorch by pip, every engine)."""
    from SAMIHSSlicer import dependencies

    engines = ("torch", "onnxruntime", "openvino")
    calls = {arguments for engine in engines
             for _, arguments in dependencies.pip_calls(list(dependencies.required(engine)), engine)}
    for number, arguments in enumerate(sorted(calls)):
        report = tmp_path / f"report{number}.json"
        result = run39(["-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                        str(report)] + shlex.split(arguments), timeout=600)
        assert result.returncode == 0, f"pip for 3.9 refused {arguments}: {result.stderr[-1500:]}"
        names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
        requested = {shlex.split(a)[0].split(">")[0].split("=")[0].split("<")[0].lower()
                     for a in shlex.split(arguments) if not a.startswith("-")}
        assert requested <= names, (arguments, names)
