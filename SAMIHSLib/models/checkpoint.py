"""Checkpoint files: the embedded LiteMedSAM weights, raw SAM state dicts, the SAMIHS authors'
state dicts, and our own self-describing, hash-checked format.

Our format is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``)::

    {"samihs_checkpoint": 1, "header_json": "<json>", "tensors": {name: tensor}}

The header records the model config (backbone, adapters, preprocessing), the base weights it
applies to (name + SHA-256), training provenance, and the SHA-256 of the tensors, so a
tampered or truncated file is rejected before anything is loaded into a model.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch

from SAMIHSLib.io.atomic_write import atomic_output
from SAMIHSLib.models.files import CheckpointError, sha256_file

FORMAT_VERSION = 1


def sha256_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` in sorted-name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def weights_identity(model, weights_sha256: Optional[str] = None) -> str:
    """Identity of a model's weights + config, whatever exports it or runs it (the key of its graphs
    and of the bf16 table); ``weights_sha256``: its weights' :func:`sha256_tensors`, when known."""
    digest = hashlib.sha256((weights_sha256 or sha256_tensors(model.state_dict())).encode())
    digest.update(repr(model.config.to_dict()).encode())
    return digest.hexdigest()[:24]


def _torch_load(path: Path) -> object:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint file is empty: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt zips and pickles
        # torch's own message runs over many lines and suggests weights_only=False, which would run
        # the file's code: never say that to a user.
        unsafe = "weights only load failed" in str(error).lower()
        reason = "it holds Python objects other than tensors, which SAMIHS never loads" if unsafe else \
            f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else 'unreadable'}"
        raise CheckpointError(f"Checkpoint file {path} is corrupt or not a PyTorch weights file ({reason}).") from error


def load_verified_weights(path: Path, expected_sha256: str) -> Dict[str, torch.Tensor]:
    """Load a raw state dict after checking its file SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file not found: {path}")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise CheckpointError(
            f"Weights file {path} has SHA-256 {actual[:12]}..., expected {expected_sha256[:12]}...: "
            "it is corrupt or a different file."
        )
    return read_raw_state_dict(path)


def read_raw_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    """A plain state dict from ``path`` (unwrapping ``{"model": ...}``/``{"state_dict": ...}``)."""
    return _unwrap_state_dict(_torch_load(path), path)


def _unwrap_state_dict(data: object, path: Path) -> Dict[str, torch.Tensor]:
    if isinstance(data, dict):
        for key in ("model", "state_dict"):
            if key in data and isinstance(data[key], dict):
                data = data[key]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} is neither a SAMIHS checkpoint nor a SAM state dict of tensors.")
    # DataParallel training prefixes every name with "module.".
    return {str(k)[7:] if str(k).startswith("module.") else str(k): v for k, v in data.items()}


@dataclass(frozen=True)
class SamihsCheckpoint:
    """A verified checkpoint of ours: its header and its tensors."""

    header: Dict[str, object]
    tensors: Dict[str, torch.Tensor]

    @property
    def model_config(self) -> Dict[str, object]:
        return self.header["model_config"]  # type: ignore[return-value]

    @property
    def base(self) -> Optional[Dict[str, str]]:
        return self.header.get("base")  # type: ignore[return-value]


def is_samihs_checkpoint(data: object) -> bool:
    return isinstance(data, dict) and data.get("samihs_checkpoint") == FORMAT_VERSION


def write_samihs_checkpoint(path: Path, tensors: Mapping[str, torch.Tensor], model_config: Dict[str, object],
                            base: Optional[Dict[str, str]], provenance: Dict[str, object]) -> Path:
    """Write our checkpoint format atomically; returns the path."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    header = {
        "format_version": FORMAT_VERSION,
        "model_config": model_config,
        "base": base,
        "provenance": provenance,
        "tensors_sha256": sha256_tensors(tensors),
    }
    path = Path(path)
    with atomic_output(path) as temporary:  # fsynced, and never a fixed ".tmp" name two writers share
        torch.save({"samihs_checkpoint": FORMAT_VERSION, "header_json": json.dumps(header, sort_keys=True),
                    "tensors": tensors}, temporary)
    return path


def read_samihs_checkpoint(path: Path) -> SamihsCheckpoint:
    """Read and verify a checkpoint of ours; raises CheckpointError if anything is off."""
    data = _torch_load(path)
    if not is_samihs_checkpoint(data):
        raise CheckpointError(f"{path} is not a SAMIHS checkpoint (no 'samihs_checkpoint' marker).")
    return _verified(data, path)  # type: ignore[arg-type]


def _verified(data: Dict[str, object], path: Path) -> SamihsCheckpoint:
    try:
        header = json.loads(str(data["header_json"]))
        tensors = dict(data["tensors"])  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has a malformed SAMIHS header: {error}") from error
    if sha256_tensors(tensors) != header.get("tensors_sha256"):
        raise CheckpointError(f"{path} failed its SHA-256 check: the weights were modified or corrupted.")
    return SamihsCheckpoint(header=header, tensors=tensors)


def load_any_checkpoint(path: Path) -> object:
    """Either a verified :class:`SamihsCheckpoint` or a raw state dict, from one read."""
    data = _torch_load(path)
    if is_samihs_checkpoint(data):
        return _verified(data, path)  # type: ignore[arg-type]
    return _unwrap_state_dict(data, path)


def convert_authors_samihs_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename mileswyn/SAMIHS parameter names to ours (adapters only; the rest is SAM's naming).

    Theirs: ``image_encoder.att_down_projection`` / ``mlp_down_projection`` (width x rank) and
    per block ``attn_adapter.adapter_rescale`` (1 x rank) and ``attn_adapter.adpater_bias``.
    """
    converted: Dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith("att_down_projection") or name.endswith("mlp_down_projection"):
            position = "attn" if name.endswith("att_down_projection") else "mlp"
            prefix = name.rsplit(".", 1)[0]
            converted[f"{prefix}.adapter_bank.bases.{position}_{tensor.shape[0]}.down"] = tensor
        elif name.endswith(".adapter_rescale"):
            converted[name.replace(".adapter_rescale", ".rescale")] = tensor.reshape(-1)
        elif name.endswith(".adpater_bias") or name.endswith(".adapter_bias"):
            converted[name.rsplit(".", 1)[0] + ".bias"] = tensor
        else:
            converted[name] = tensor
    return converted


def looks_like_authors_samihs(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith("att_down_projection") or k.endswith(".adpater_bias") for k in state)
