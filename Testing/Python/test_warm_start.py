"""A CPU engine's second start runs the graphs its first start recorded, without torch and with the
same masks; changed model files or graphs, or an engine never checked on this CPU, load as at first."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, real_whole_ct
from SAMIHSLib.engines.onnx_graphs import DEFAULT_CACHE, GRAPH_MANIFEST, VERIFIED_RECORD, cached_onnx_graphs
from SAMIHSLib.engines.warm_start import record_path, remember_graphs, warm_engine
from SAMIHSLib.interaction.predictor import model_and_engine
from SAMIHSLib.models.files import SHIPPED_STAGED_MODEL
from SAMIHSLib.models.summary import ModelSummary


def _click_mask(predictor, volume_hu, spacing_zyx, k, point):
    from SAMIHSLib.interaction.session import HemorrhageSession

    predictor.set_volume(volume_hu, spacing_zyx)
    session = HemorrhageSession(predictor)
    session.click(k, [point])
    return session.mask.copy()


@pytest.mark.real_data
def test_the_second_start_needs_no_torch_and_answers_as_the_first(tmp_path):
    from SAMIHSLib.interaction.predictor import SAMIHSPredictor
    from SAMIHSLib.interaction.regions import deepest_point, slice_with_most

    volume, truth = real_whole_ct("073", slice(24, 31))
    k = slice_with_most(truth)
    point = tuple(float(v) for v in deepest_point(truth[k]))
    spacing_zyx = tuple(float(v) for v in reversed(volume.spacing_ijk))
    record = record_path("lite-base")
    record.unlink(missing_ok=True)  # this start is a first start
    model, engine = model_and_engine("lite-base", "cpu", "openvino")
    assert not isinstance(model, ModelSummary) and record.is_file()
    first = _click_mask(SAMIHSPredictor(model, engine=engine), volume.array_hu, spacing_zyx, k, point)
    assert (first & truth).sum() > 0.5 * truth[k].sum()

    np.save(tmp_path / "volume.npy", volume.array_hu)
    script = (
        "import sys\nimport numpy as np\n"
        "from SAMIHSLib.interaction.predictor import load_predictor\n"
        "from SAMIHSLib.interaction.session import HemorrhageSession\n"
        "from SAMIHSLib.models.summary import ModelSummary\n"
        "predictor = load_predictor('lite-base', device='cpu', engine='openvino')\n"
        "assert isinstance(predictor.model, ModelSummary), type(predictor.model)\n"
        f"predictor.set_volume(np.load(r'{tmp_path / 'volume.npy'}'), {spacing_zyx})\n"
        "session = HemorrhageSession(predictor)\n"
        f"session.click({k}, [{point}])\n"
        f"np.save(r'{tmp_path / 'second.npy'}', session.mask)\n"
        "print('torch imported:', 'torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "torch imported: False" in run.stdout
    assert np.array_equal(np.load(tmp_path / "second.npy"), first)


def _cache_with_graphs(tmp_path, lite_model):
    """A cache holding lite-base's graphs, checked on this CPU by OpenVINO, and their record."""
    source = cached_onnx_graphs(lite_model, DEFAULT_CACHE, lambda e, d: None)[0].parent
    model_and_engine("lite-base", "cpu", "openvino")  # the test cache's graphs are checked here once
    folder = tmp_path / source.name
    folder.mkdir()
    for name in ("encoder.onnx", "decoder.onnx", GRAPH_MANIFEST, VERIFIED_RECORD):
        shutil.copy2(source / name, folder / name)
    remember_graphs("lite-base", lite_model, folder, cache_dir=tmp_path)
    return folder


def test_changed_graphs_or_an_unchecked_engine_load_the_model_again(tmp_path, lite_model):
    folder = _cache_with_graphs(tmp_path, lite_model)
    warm = warm_engine("lite-base", "openvino", cache_dir=tmp_path)
    assert warm is not None and warm[0] == ModelSummary.of(lite_model) and warm[1].name == "openvino"

    checked = json.loads((folder / VERIFIED_RECORD).read_text())
    (folder / VERIFIED_RECORD).write_text(json.dumps([i for i in checked if not i.startswith("openvino |")]))
    assert warm_engine("lite-base", "openvino", cache_dir=tmp_path) is None  # never checked on this CPU
    (folder / VERIFIED_RECORD).write_text(json.dumps(checked))
    assert warm_engine("lite-base", "openvino", cache_dir=tmp_path) is not None

    graph = folder / "decoder.onnx"
    graph.write_bytes(graph.read_bytes()[:-100])  # edited or truncated since it was checked
    assert warm_engine("lite-base", "openvino", cache_dir=tmp_path) is None
    assert warm_engine("lite-base", "torch", cache_dir=tmp_path) is None  # PyTorch always loads the model


def test_an_asked_gpu_always_loads_the_model():
    from SAMIHSLib.device import only_cpu_here

    assert only_cpu_here("cpu") and not only_cpu_here("cuda") and not only_cpu_here("mps")


def test_the_record_is_named_by_the_model_files_bytes(tmp_path):
    copy = tmp_path / "model.samihs.pt"
    shutil.copy2(SHIPPED_STAGED_MODEL, copy)
    key = record_path(str(copy), tmp_path)
    assert key == record_path(str(copy), tmp_path) and key != record_path("lite-base", tmp_path)
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    assert record_path(str(copy), tmp_path) != key  # another file: another record
    assert record_path("vit_b", tmp_path) is None and record_path(str(tmp_path / "missing.pt"), tmp_path) is None
