"""What a federated client's messages hold, and whether any of it is raw data: the audit log and its leak check.

The check (:func:`leaks`) looks for the client's data in every array that leaves it, in the forms a careless or
malicious client could send it:

* **fingerprint values, up to an affine map**: every block of ``BLOCK`` consecutive columns of every fingerprint row
  (RSS with "not heard" read at the floor, as xloc's models read it; CSI as its real and imaginary parts) is
  compared, centred and scaled to unit norm, with every window of the outgoing array; a window whose Pearson
  correlation with a block is at least ``CORRELATION`` in absolute value is a copy ``a r + b`` of it -- rescaled,
  shifted or negated. A whole row, and any run of at least ``2 BLOCK - 1`` consecutive columns of one, contains a
  full block. Blocks of fewer than ``MIN_DISTINCT`` distinct values, or with more than ``MAX_REPEATS`` entries of
  one value (mostly "not heard"), are skipped: they look like the sparse rows of ReLU gradients;
* **positions, within a tolerance**: two consecutive pairs of outgoing values each within ``POSITION_TOLERANCE_M``
  of one of the client's positions (any two of them, in any order: pairs, triples and subsets of the positions).
  Positions within ``MIN_POSITION_NORM_M`` of the origin are left out: small weights lie there;
* **metrics** not on the allowed list.

Not caught: non-contiguous subsets of columns (every other AP), a copy through a non-linear map, a sum or mean of
rows (what the meta-gradients are, by design), and positions spread over arrays. docs/distributed.md says what each
message carries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.spatial import cKDTree

from xloc.data.fingerprints import Fingerprints
from xloc.learn.federated.protocol import ALLOWED_METRICS, to_tensors

__all__ = ["records", "RawSignatures", "raw_signatures", "leaks", "read_audit", "BLOCK", "CORRELATION",
           "POSITION_TOLERANCE_M"]

#: consecutive fingerprint columns compared at once
BLOCK = 8
#: distinct values a block needs to be compared
MIN_DISTINCT = 5
#: most entries of a block that may share one value (a floor, a zero)
MAX_REPEATS = 3
#: |Pearson correlation| from which an outgoing window is an affine copy of a block: float32 copies reach
#: 1 - 1e-12; ReLU gradients of SODIndoorLoc's four buildings came within 1 - 1e-4 of sparse blocks
CORRELATION = 1.0 - 1e-9
#: distance [m] within which an outgoing pair of values is one of the client's positions
POSITION_TOLERANCE_M = 0.01
#: positions closer than this [m] to the origin are not compared
MIN_POSITION_NORM_M = 1.0
#: "not heard" as xloc's RSS models read it [dBm]
FLOOR_DBM = -105.0


def records(msg: Any) -> list[dict[str, Any]]:
    """What a message carries: each record's keys, and for arrays each tensor's name and shape (unpacked with the
    message's ``layout`` record when it has one, see :func:`xloc.learn.federated.protocol.to_arrays`)."""
    out = []
    if msg.has_content():
        layout = msg.content["layout"] if "layout" in msg.content else None
        for rname, record in msg.content.items():
            entry: dict[str, Any] = {"record": rname, "type": type(record).__name__}
            if type(record).__name__ == "ArrayRecord" and layout is not None and rname == "arrays":
                entry["arrays"] = dict(zip(layout["names"], json.loads(str(layout["shapes"])), strict=True))
            elif type(record).__name__ == "ArrayRecord":
                entry["arrays"] = {k: list(v.shape) for k, v in record.items()}
            else:
                entry["keys"] = sorted(record.keys())
            out.append(entry)
    return out


def _unit_rows(windows: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit norm; constant rows become NaN."""
    centred = windows - windows.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / np.where(norm > 1e-12 * (1 + np.abs(windows).max(axis=1, keepdims=True)), norm, np.nan)


@dataclass(frozen=True)
class RawSignatures:
    """A client's data in the forms :func:`leaks` compares: unit blocks of ``width`` columns, and positions."""

    width: int
    blocks: np.ndarray
    positions_m: np.ndarray
    _block_tree: Any = field(init=False, repr=False, compare=False)
    _position_tree: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_block_tree", cKDTree(self.blocks) if len(self.blocks) else None)
        object.__setattr__(self, "_position_tree", cKDTree(self.positions_m) if len(self.positions_m) else None)

    def affine_copy_at(self, values: np.ndarray) -> int | None:
        """Index of the first window of ``values`` that is an affine copy of a block, else None."""
        if self._block_tree is None or values.size < self.width:
            return None
        windows = _unit_rows(sliding_window_view(values, self.width))
        ok = np.isfinite(windows).all(axis=1)
        if not ok.any():
            return None
        radius = np.sqrt(2.0 * (1.0 - CORRELATION))  # |u - v|^2 = 2 - 2 rho for unit vectors
        index = np.flatnonzero(ok)
        for sign in (1.0, -1.0):
            dist, _ = self._block_tree.query(sign * windows[index], k=1, distance_upper_bound=radius)
            hit = np.flatnonzero(np.isfinite(dist))
            if hit.size:
                return int(index[hit[0]])
        return None

    def position_pair_at(self, values: np.ndarray) -> int | None:
        """Index of the first two consecutive value pairs that are both client positions, else None."""
        if self._position_tree is None or values.size < 4:
            return None
        pairs = sliding_window_view(values, 2)
        dist, _ = self._position_tree.query(np.nan_to_num(pairs, nan=np.inf, posinf=np.inf, neginf=np.inf), k=1,
                                            distance_upper_bound=POSITION_TOLERANCE_M)
        near = np.isfinite(dist)
        both = np.flatnonzero(near[:-2] & near[2:])
        return int(both[0]) if both.size else None


def raw_signatures(env: Fingerprints, *, block: int = BLOCK) -> RawSignatures:
    """What of ``env`` must never leave its client, in the forms :func:`leaks` compares."""
    x = np.asarray(env.measurements)
    if np.iscomplexobj(x):
        x = np.concatenate([x.real.reshape(len(x), -1), x.imag.reshape(len(x), -1)], axis=1)
    rows = np.asarray(x, dtype=np.float64).reshape(len(env), -1)
    if env.environment.kind == "rss":
        rows = np.where(np.isnan(rows), FLOOR_DBM, rows)
    width = min(block, rows.shape[1])
    starts = list(range(0, rows.shape[1] - width + 1, width))
    if rows.shape[1] % width:
        starts.append(rows.shape[1] - width)  # the tail, overlapping the last aligned block
    candidates = np.concatenate([rows[:, s:s + width] for s in starts])
    candidates = candidates[np.isfinite(candidates).all(axis=1)]
    same = np.diff(np.sort(candidates, axis=1), axis=1) == 0
    distinct = (~same).sum(axis=1) + 1
    run = repeats = np.ones(len(candidates), dtype=int)  # the longest run of one value in each sorted block
    for column in same.T:
        run = np.where(column, run + 1, 1)
        repeats = np.maximum(repeats, run)
    keep = (distinct >= min(MIN_DISTINCT, width)) & (repeats <= max(MAX_REPEATS, width - MIN_DISTINCT + 1))
    candidates = np.unique(candidates[keep], axis=0)
    unit = _unit_rows(candidates)
    pos = np.asarray(env.positions_m, dtype=np.float64)[:, :2]
    return RawSignatures(width, unit[np.isfinite(unit).all(axis=1)],
                         np.unique(pos[np.linalg.norm(pos, axis=1) >= MIN_POSITION_NORM_M], axis=0))


def leaks(content: Any, env: Fingerprints, signatures: RawSignatures | None = None) -> list[str]:
    """Arrays of a message's ``content`` that contain the client's data (see the module docstring), and metrics
    not on the allowed list. ``signatures``: :func:`raw_signatures` of ``env``, computed once per client."""
    found = []
    sig = signatures or raw_signatures(env)
    arrays: list[tuple[str, np.ndarray]] = []
    for rname, record in content.items():
        if type(record).__name__ == "ArrayRecord" and rname == "arrays" and "layout" in content:
            arrays += [(f"{rname}/{k}", v.numpy()) for k, v in to_tensors(content).items()]
        elif type(record).__name__ == "ArrayRecord":
            arrays += [(f"{rname}/{k}", v.numpy()) for k, v in record.items()]
        elif type(record).__name__ == "MetricRecord":
            found += [f"metric {k} not allowed" for k in record.keys() if k not in ALLOWED_METRICS]
    for name, values in arrays:
        a = np.asarray(values, dtype=np.float64).ravel()
        at = sig.affine_copy_at(a)
        if at is not None:
            found.append(f"{name} holds raw data (fingerprint values, up to scale and offset, at {at})")
        at = sig.position_pair_at(a)
        if at is not None:
            found.append(f"{name} holds raw data (positions, at {at})")
    return found


def read_audit(audit_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every audited client message (one dict per message and direction pair)."""
    entries = []
    for path in sorted(Path(audit_dir).glob("client-*.jsonl")):
        entries += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return entries
