"""Imports run one way through SAMIHSLib, down the layers written in ``SAMIHSLib.LAYERS``; no
library module, nor the Slicer module or the web app, imports an application (cli, batch); and
the library never imports Qt, Slicer or the training package."""

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import SAMIHSLib
from conftest import REPO

FORBIDDEN_IN_LIBRARY = ("qt", "ctk", "slicer", "PythonQt", "training")


def imported_modules(source: str) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (relative imports are not used here)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def layer_of(module: str) -> int:
    """The layer of ``SAMIHSLib.<part>...``; the package itself (``__version__``) is a leaf."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    for index, names in enumerate(SAMIHSLib.LAYERS):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module} is in no layer of SAMIHSLib.LAYERS: add it there")


def library_violations(root: Path) -> List[str]:
    """Imports under ``root`` (a SAMIHSLib folder) that run up a layer or leave the library."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("SAMIHSLib",) + path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for line, target in imported_modules(path.read_text()):
            where = f"{path.relative_to(root.parent)}:{line} -> {target}"
            if target.split(".")[0] in FORBIDDEN_IN_LIBRARY:
                found.append(f"outside the library: {where}")
            elif target.startswith("SAMIHSLib.") and layer_of(target) > layer_of(module):
                found.append(f"up a layer: {where}")
    return found


def application_imports(folder: Path) -> List[str]:
    return [f"{path.relative_to(REPO)}:{line} -> {target}" for path in sorted(folder.rglob("*.py"))
            for line, target in imported_modules(path.read_text())
            if target.startswith("SAMIHSLib.") and target.split(".")[1] in SAMIHSLib.APPLICATIONS]


def test_samihslib_imports_only_down_its_layers():
    assert library_violations(REPO / "SAMIHSLib") == []


@pytest.mark.parametrize("folder", ["SAMIHS", "web"])
def test_the_slicer_module_and_the_web_app_import_no_application(folder):
    assert application_imports(REPO / folder) == []


def test_every_samihslib_package_and_module_has_a_layer():
    for path in (REPO / "SAMIHSLib").iterdir():
        if path.name != "__init__.py" and (path.suffix == ".py" or (path / "__init__.py").is_file()):
            layer_of(f"SAMIHSLib.{path.stem}")


def test_the_check_finds_an_upward_import_and_a_training_import(tmp_path):
    root = tmp_path / "SAMIHSLib"
    (root / "io").mkdir(parents=True)
    (root / "io" / "reader.py").write_text("from SAMIHSLib.interaction.session import HemorrhageSession\n")
    (root / "metrics.py").write_text("import numpy as np\nfrom training.folds import read_folds\n")
    (root / "interaction").mkdir()
    (root / "interaction" / "fine.py").write_text("from SAMIHSLib.io.validation import InputError\n")
    assert library_violations(root) == [
        "up a layer: SAMIHSLib/io/reader.py:1 -> SAMIHSLib.interaction.session",
        "outside the library: SAMIHSLib/metrics.py:2 -> training.folds",
    ]
