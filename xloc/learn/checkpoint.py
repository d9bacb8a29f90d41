"""Model folders: ``weights.safetensors`` plus ``meta.json``; never pickles.

Writing goes to a temporary folder beside the target that is renamed into place, so an interrupted save leaves
the old model (or nothing), never half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from xloc.errors import FileFormatError
from xloc.io import read_json, user_umask

__all__ = ["save_model_folder", "load_model_folder", "read_model_kind", "MODEL_FORMAT_VERSION"]

MODEL_FORMAT_VERSION = 1
_WEIGHTS = "weights.safetensors"
_META = "meta.json"


def save_model_folder(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any],
    parts: dict[str, Callable[[Path], Any]] | None = None,
) -> Path:
    """Write ``tensors`` (safetensors) and ``meta`` (JSON) to the folder ``path`` atomically.

    ``parts`` maps a sub-folder name to a function that saves a nested model there (an estimator's engine), so
    the whole folder appears at once. The folder and its files get the permissions the user's umask gives.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~user_umask())  # mkdtemp makes 0700; a colleague or a service account must read models
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / _WEIGHTS))
        doc = {"format": "xloc-model", "format_version": MODEL_FORMAT_VERSION, **meta}
        (tmp / _META).write_text(json.dumps(doc, indent=1))
        for written in (tmp / _WEIGHTS, tmp / _META):  # safetensors writes 0600 whatever the umask says
            os.chmod(written, 0o666 & ~user_umask())
        for name, save_part in (parts or {}).items():
            save_part(tmp / name)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_model_folder(
    path: str | os.PathLike[str], kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a model folder; a clear :class:`FileFormatError` for anything that is not one, or (given ``kind``)
    for a folder holding another kind of model."""
    folder = Path(path)
    weights, meta_path = folder / _WEIGHTS, folder / _META
    if not weights.is_file() or not meta_path.is_file():
        raise FileFormatError(f"{folder}: not an xloc model folder (needs {_WEIGHTS} and {_META})")
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != "xloc-model":
        raise FileFormatError(f"{meta_path}: not an xloc model (no \"format\": \"xloc-model\")")
    if kind is not None and meta.get("kind") != kind:
        raise FileFormatError(f"{folder}: holds a {meta.get('kind')!r} model, not {kind}")
    if int(meta.get("format_version", -1)) > MODEL_FORMAT_VERSION:
        raise FileFormatError(f"{folder}: model format {meta['format_version']} is newer than this xloc reads")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise FileFormatError(f"{weights}: unreadable safetensors file: {exc}") from None
    return tensors, meta


def read_model_kind(path: str | os.PathLike[str]) -> str:
    """The ``kind`` a model folder's metadata names (without reading the weights)."""
    meta_path = Path(path) / _META
    if not meta_path.is_file():
        raise FileFormatError(f"{path}: not an xloc model folder (no {_META})")
    meta = read_json(meta_path)
    return str(meta.get("kind")) if isinstance(meta, dict) else "unknown"
