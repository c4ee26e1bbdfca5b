"""The Slicer extension packages every file it needs, and the code Slicer runs is Python 3.9."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "SAMIHS"


def _cmake_list(variable: str) -> set:
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    block = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert block, f"{variable} not found in SAMIHS/CMakeLists.txt"
    return {item.replace("${MODULE_NAME}", "SAMIHS") for item in block.group(1).split()}


def test_every_module_python_file_is_in_module_python_scripts():
    listed = _cmake_list("MODULE_PYTHON_SCRIPTS")
    present = {str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*.py")}
    assert present - listed == set(), f"missing from MODULE_PYTHON_SCRIPTS: {sorted(present - listed)}"
    assert listed - present == set(), f"listed but absent: {sorted(listed - present)}"


def test_the_module_folder_holds_no_python_file_but_the_module():
    """Slicer's module factory loads every .py in a module folder as a module ("class ... was not
    found" at each start, and a helper's code run twice): helpers live in SAMIHSSlicer/."""
    assert [p.name for p in MODULE_DIR.glob("*.py")] == ["SAMIHS.py"]
    assert (MODULE_DIR / "SAMIHSSlicer" / "__init__.py").is_file()


def test_every_samihslib_file_is_packaged_with_the_module():
    listed = _cmake_list("SAMIHSLIB_PYTHON_SCRIPTS")
    present = {str(p.relative_to(REPO)) for p in (REPO / "SAMIHSLib").rglob("*.py")}
    assert present - listed == set(), f"missing from SAMIHSLIB_PYTHON_SCRIPTS: {sorted(present - listed)}"
    assert listed - present == set(), f"listed but absent: {sorted(listed - present)}"


def test_every_module_resource_is_listed_and_exists():
    listed = _cmake_list("MODULE_PYTHON_RESOURCES")
    present = {str(p.relative_to(MODULE_DIR)) for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert present == listed


def test_shipped_checkpoints_are_packaged_where_the_registry_looks():
    from SAMIHSLib.models.files import SHIPPED_CHECKPOINTS
    from SAMIHSLib.volume.automatic import SHIPPED_DETECTOR

    shipped = [*SHIPPED_CHECKPOINTS.values(), SHIPPED_DETECTOR]
    listed = _cmake_list("SAMIHS_SHIPPED_MODELS")
    assert listed == {str(path.relative_to(REPO)) for path in shipped}
    # installed beside SAMIHSLib, whose parent the registry resolves Resources/ against
    assert "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${model_dir}" in (MODULE_DIR / "CMakeLists.txt").read_text()
    for path in shipped:
        assert path.is_file() and path.parents[2] == (REPO / "SAMIHSLib").parent


def test_extension_metadata_is_complete():
    text = (REPO / "CMakeLists.txt").read_text()
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{field} "[^"]+"\)', text), field
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text
    assert "add_subdirectory(SAMIHS)" in text


def test_sample_data_checksum_matches_the_shipped_file():
    from SAMIHSLib.models.files import sha256_file

    source = (MODULE_DIR / "SAMIHS.py").read_text()
    declared = re.search(r'SAMPLE_SHA256 = "([0-9a-f]{64})"', source).group(1)
    assert sha256_file(MODULE_DIR / "Resources" / "SampleData" / "SAMIHSPhantomHeadCT.nrrd") == declared


class Python39Checker(ast.NodeVisitor):
    """What parses on 3.11 but fails on Slicer 5.8's Python 3.9 at import or call time."""

    def __init__(self, future_annotations: bool) -> None:
        self.future_annotations = future_annotations
        self.problems = []

    def _annotation(self, node, where):
        if node is not None and not self.future_annotations:
            for sub in ast.walk(node):
                if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr):
                    self.problems.append(f"line {sub.lineno}: 'X | Y' annotation in {where} (3.10+)")

    def visit_FunctionDef(self, node):
        for arg in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
            self._annotation(arg.annotation, node.name)
        self._annotation(node.returns, node.name)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        self._annotation(node.annotation, "a variable")
        self.generic_visit(node)

    def visit_Call(self, node):
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        keywords = {k.arg for k in node.keywords}
        if name == "zip" and "strict" in keywords:
            self.problems.append(f"line {node.lineno}: zip(strict=) (3.10+)")
        if name == "dataclass" and keywords & {"slots", "kw_only"}:
            self.problems.append(f"line {node.lineno}: dataclass(slots/kw_only) (3.10+)")
        self.generic_visit(node)


SLICER_RUNS = sorted(MODULE_DIR.rglob("*.py")) + sorted((REPO / "SAMIHSLib").rglob("*.py"))


@pytest.mark.parametrize("path", SLICER_RUNS, ids=[str(p.relative_to(REPO)) for p in SLICER_RUNS])
def test_code_run_inside_slicer_is_python_3_9(path):
    source = path.read_text()
    tree = ast.parse(source, filename=str(path), feature_version=(3, 9))  # 3.10+ grammar raises here
    compile(source, str(path), "exec")
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                 any(a.name == "annotations" for a in n.names) for n in tree.body)
    checker = Python39Checker(future)
    checker.visit(tree)
    assert not checker.problems, checker.problems


def test_the_python_3_9_check_catches_3_10_code():
    tree = ast.parse("def f(x: int | None) -> list[int] | None:\n    return list(zip(a, b, strict=True))\n")
    checker = Python39Checker(future_annotations=False)
    checker.visit(tree)
    assert len(checker.problems) == 3
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 9))


def test_every_samihslib_folder_with_python_is_a_package_pip_installs():
    """setuptools' package discovery (pyproject: packages.find) installs only folders with an
    __init__.py: a folder without one works from the checkout and is missing from the installed wheel."""
    folders = {p.parent for p in (REPO / "SAMIHSLib").rglob("*.py")}
    assert [str(f.relative_to(REPO)) for f in sorted(folders) if not (f / "__init__.py").is_file()] == []
