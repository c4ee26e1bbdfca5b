"""An engine starts fast the second time and stays exact: the check against PyTorch runs once
per graphs, runtime and CPU (recorded beside the graphs), OpenVINO's compiled graphs are kept
(written atomically) and a damaged one is compiled again; and which precision ``auto`` runs."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import REPO, require
from SAMIHSLib.engines import make_engine, resolve_engine_name
from SAMIHSLib.engines import precision as precision_policy
from SAMIHSLib.models.checkpoint import weights_identity
from SAMIHSLib.engines.onnx_graphs import VERIFIED_RECORD

require("openvino", module_level=True)
from SAMIHSLib.engines import openvino_engine  # noqa: E402
from SAMIHSLib.engines.openvino_engine import COMPILED_CACHE  # noqa: E402


@pytest.fixture
def verifications(monkeypatch):
    """Counts the engine checks against PyTorch (the real check runs)."""
    calls = []
    real = openvino_engine.verify_against_torch

    def counted(*args, **kwargs):
        calls.append(args[0].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(openvino_engine, "verify_against_torch", counted)
    return calls


def _graphs_only(tmp_path, model):
    """A cache holding ``model``'s exported graphs and nothing else (no record of a check, no compiled
    graph), copied from the test run's cache: the test then starts where a fresh export leaves off."""
    from SAMIHSLib.engines.onnx_graphs import DEFAULT_CACHE, GRAPH_MANIFEST, cached_onnx_graphs
    from SAMIHSLib.engines.export import model_fingerprint

    cached_onnx_graphs(model, DEFAULT_CACHE, lambda e, d: None)  # exported once per test cache, usually already
    source, folder = DEFAULT_CACHE / model_fingerprint(model), tmp_path / model_fingerprint(model)
    folder.mkdir()
    for name in ("encoder.onnx", "decoder.onnx", GRAPH_MANIFEST):
        shutil.copy2(source / name, folder / name)
    return folder


def test_the_check_against_pytorch_runs_once_and_compiled_graphs_are_reused(lite_model, tmp_path, verifications):
    image = torch.rand(1, 3, 256, 256).numpy()
    folder = _graphs_only(tmp_path, lite_model)
    first = make_engine(lite_model, "openvino", cache_dir=tmp_path)
    checks_at_export = len(verifications)
    assert checks_at_export == 1
    record = json.loads((folder / VERIFIED_RECORD).read_text())
    assert len(record) == 1 and record[0].startswith("openvino | ")
    blobs = sorted((folder / COMPILED_CACHE).glob("*.blob"))
    assert [b.name.split("-")[0] for b in blobs] == ["decoder", "encoder"]
    stamps = [b.stat().st_mtime_ns for b in blobs]

    second = make_engine(lite_model, "openvino", cache_dir=tmp_path)
    assert len(verifications) == checks_at_export  # recorded as passed: not checked again
    assert [b.stat().st_mtime_ns for b in blobs] == stamps  # imported, not compiled and written again
    assert np.array_equal(first.encode(image), second.encode(image))

    blobs[1].write_bytes(blobs[1].read_bytes()[:1000])  # a damaged compiled encoder
    third = make_engine(lite_model, "openvino", cache_dir=tmp_path)
    assert blobs[1].stat().st_size > 1_000_000  # compiled again and replaced
    assert np.array_equal(first.encode(image), third.encode(image))

    (folder / VERIFIED_RECORD).write_text(json.dumps(["openvino | another runtime | another CPU"]))
    make_engine(lite_model, "openvino", cache_dir=tmp_path)
    assert len(verifications) == checks_at_export + 1  # another runtime's pass says nothing here


def test_auto_runs_bf16_only_for_a_checked_model_on_a_cpu_with_native_bf16(lite_model, monkeypatch):
    assert resolve_engine_name("auto", "cpu", lite_model) == "openvino"  # lite-base failed the comparison
    monkeypatch.setitem(precision_policy.BF16_VALIDATED, weights_identity(lite_model), "a model that passed")
    expected = "openvino-bf16" if precision_policy.cpu_has_native_bf16() else "openvino"
    assert resolve_engine_name("auto", "cpu", lite_model) == expected
    assert resolve_engine_name("auto", "cuda", lite_model) == "torch"
    assert resolve_engine_name("auto", "cpu") == "openvino"  # no model named: exact


@pytest.mark.real_data
def test_the_bf16_table_is_what_the_committed_comparison_says(lite_model):
    from training.precision_comparison import compare_records, verdict

    results = REPO / "training" / "results" / "precision"
    committed = json.loads((results / "comparison.json").read_text())
    rows = []
    for name, fp32_run, bf16_run in ((n, committed["sources"][f"{n} fp32"], committed["sources"][f"{n} bf16"])
                                     for n in ("2D", "3D")):
        rows += compare_records(name, REPO / fp32_run / "records.csv", REPO / bf16_run / "records.csv")
    recomputed = verdict(rows)
    assert recomputed["largest_difference"] == committed["largest_difference"]
    assert recomputed["rows"] == committed["rows"] > 100
    validated = weights_identity(lite_model) in precision_policy.BF16_VALIDATED
    assert validated == recomputed["bf16_within_limit"]
