"""A CPU engine started from its cached graphs without torch: every start after a model's first.

The first start builds the model with torch, exports and checks its graphs (``onnx_graphs``) and
then records here which graphs belong to the files the model was read from (by their SHA-256, with
the exporter's version and torch's), with the model's summary. A later start from the same files
finds that record, checks the graphs' own hashes and that this engine passed the check against
PyTorch on this CPU, and runs them: torch is not imported and no model is built (about 1.5 s and
200 MB less per process). Anything missing or changed gives None, and the caller loads the model as
on a first start.
"""

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import List, Optional, Tuple

from SAMIHSLib.engines.onnx_graphs import DEFAULT_CACHE, EXPORT_VERSION, cache_is_intact, engine_identity, passed_checks
from SAMIHSLib.models.files import SHIPPED_CHECKPOINTS, CheckpointError, lite_medsam_weights_path, sha256_file
from SAMIHSLib.models.summary import ModelSummary

RECORDS = "by-model-files"


def model_files(spec: str) -> Optional[List[Path]]:
    """The files whose bytes decide the model ``spec`` names (None: not built from files, or a file
    is missing). A checkpoint file may apply to the LiteMedSAM base, which only its contents say,
    so the base is always among them."""
    if spec == "vit_b":  # random weights: built anew each time
        return None
    try:
        base = lite_medsam_weights_path()
    except CheckpointError:
        return None
    files = [base] if spec == "lite-base" else [Path(SHIPPED_CHECKPOINTS.get(spec, spec)), base]
    return files if all(path.is_file() for path in files) else None


def _torch_version() -> Optional[str]:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def record_path(spec: str, cache_dir: Optional[Path] = None) -> Optional[Path]:
    """Where the record of ``spec``'s graphs is kept: named by its files' SHA-256, the exporter's
    version and the installed torch's (which exported them); None when ``spec`` has no files."""
    files, torch_version = model_files(spec), _torch_version()
    if files is None or torch_version is None:
        return None
    digest = hashlib.sha256(f"export{EXPORT_VERSION}|torch{torch_version}".encode())
    for path in files:
        digest.update(sha256_file(path).encode())
    return Path(cache_dir or DEFAULT_CACHE) / RECORDS / f"{digest.hexdigest()[:24]}.json"


def remember_graphs(spec: str, model, graph_dir: Path, cache_dir: Optional[Path] = None) -> None:
    """Record that ``model``, loaded from ``spec``, runs on the graphs in ``graph_dir`` (best effort:
    a read-only cache only means every start loads the model)."""
    from SAMIHSLib.io.atomic_write import write_text_atomic

    path = record_path(spec, cache_dir)
    if path is None:
        return
    record = {"graphs": Path(graph_dir).name, "model": ModelSummary.of(model).to_dict()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=1))
    except OSError:
        pass


def warm_engine(spec: str, engine: str, threads: Optional[int] = None,
                cache_dir: Optional[Path] = None) -> Optional[Tuple[ModelSummary, object]]:
    """(the model's summary, a ready engine) for ``spec`` on the CPU engine ``engine`` (a name or
    ``auto``) from the graphs its first start recorded, or None where that start must be repeated."""
    from SAMIHSLib.engines import ENGINES, resolve_engine_name

    if engine == "torch":  # runs the model itself
        return None
    path = record_path(spec, cache_dir)
    if path is None:
        return None
    try:
        record = json.loads(path.read_text())
        summary = ModelSummary.from_dict(record["model"])
        graph_dir = path.parent.parent / str(record["graphs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not cache_is_intact(graph_dir):
        return None
    name = resolve_engine_name(engine, "cpu", summary)
    if ENGINES[name].needs_module not in ("openvino", "onnxruntime"):
        return None
    encoder, decoder = graph_dir / "encoder.onnx", graph_dir / "decoder.onnx"
    if name == "onnxruntime":
        from SAMIHSLib.engines.onnx_engine import OnnxRuntimeEngine

        if engine_identity(name, OnnxRuntimeEngine.runtime()) not in passed_checks(graph_dir):
            return None
        return summary, OnnxRuntimeEngine(encoder, decoder, threads)
    from SAMIHSLib.engines.openvino_engine import OpenVinoEngine

    if engine_identity(name, OpenVinoEngine.runtime()) not in passed_checks(graph_dir):
        return None
    return summary, OpenVinoEngine(encoder, decoder, threads, "bf16" if name.endswith("bf16") else "f32")
