"""What a federated client's messages hold, and whether any of it is raw data: the audit log and its leak check."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.fingerprints import Fingerprints
from xloc.learn.federated.protocol import ALLOWED_METRICS

__all__ = ["records", "raw_rows", "leaks", "read_audit"]


def records(msg: Any) -> list[dict[str, Any]]:
    out = []
    if msg.has_content():
        for rname, record in msg.content.items():
            entry: dict[str, Any] = {"record": rname, "type": type(record).__name__}
            if type(record).__name__ == "ArrayRecord":
                entry["arrays"] = {k: list(v.shape) for k, v in record.items()}
            else:
                entry["keys"] = sorted(record.keys())
            out.append(entry)
    return out


def raw_rows(env: Fingerprints) -> dict[int, set[bytes]]:
    """Byte strings of raw content by length in floats: each fingerprint row that is not constant, and each run
    of three consecutive positions (x, y) -- shorter runs would match innocent numbers such as zero biases."""
    rss = np.asarray(env.measurements, dtype=np.float32).reshape(len(env), -1)
    rows = {r.tobytes() for r in rss if np.ptp(r) > 0}
    pos = np.asarray(env.positions_m[:, :2], dtype=np.float32)
    triples = {pos[i : i + 3].tobytes() for i in range(len(pos) - 2)}
    return {rss.shape[1]: rows, 6: triples}


def leaks(content: Any, env: Fingerprints) -> list[str]:
    """Arrays of a message's ``content`` that contain raw data (see :func:`raw_rows`), and metrics not on the
    allowed list."""
    found = []
    raw = raw_rows(env)
    for rname, record in content.items():
        if type(record).__name__ == "ArrayRecord":
            for k, v in record.items():
                a = np.asarray(v.numpy(), dtype=np.float32).ravel()
                for w, pieces in raw.items():
                    if pieces and a.size >= w and any(a[i : i + w].tobytes() in pieces
                                                      for i in range(a.size - w + 1)):
                        found.append(f"{rname}/{k} holds raw data ({w} values)")
        elif type(record).__name__ == "MetricRecord":
            found += [f"metric {k} not allowed" for k in record.keys() if k not in ALLOWED_METRICS]
    return found


def read_audit(audit_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every audited client message (one dict per message and direction pair)."""
    entries = []
    for path in sorted(Path(audit_dir).glob("client-*.jsonl")):
        entries += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return entries
