"""The one place files are written: atomic text writes (temporary file in the same folder, then rename).

Storage, checkpoints, result files, ray-tracing caches and the Flower files all write through here, so a reader
never sees half a file and a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_text", "atomic_write_bytes", "user_umask", "read_json"]


def user_umask() -> int:
    """The process's umask (read without changing it for good): files xloc writes get the permissions it gives."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document in ``path``; a :class:`~xloc.errors.FileFormatError` naming the file (and the line and
    column) when it is not valid JSON."""
    from xloc.errors import FileFormatError

    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: not valid JSON: {exc}") from None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``; the file gets ``mode`` (default: what
    the user's umask gives a new file), and the temporary file is removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if mode is None:
            mode = 0o666 & ~user_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
