"""Channel corpora for self-supervised pretraining: a folder of HDF5 chunks and a manifest, streamed in batches.

A corpus folder holds

* ``manifest.json`` -- ``{"format": "xloc-corpus", "format_version": 1, "chunks": [...]}``, one
  :class:`ChunkInfo` per chunk (file, channel count, grid, source, radio settings, power statistics);
* ``chunk-000000.h5``, ``twin-canyon-0-0000.h5`` ... -- dataset ``csi`` ``(n, M, K)`` complex64: one BS's
  channel to one user per row (linear gain, antennas x subcarriers), and, when the chunk has PICL views,
  ``csi_view`` of the same shape: the same user and BS under another condition of the scene (other vehicles).

Chunks are written atomically (temporary file, then rename) and the manifest after every chunk, so a reader never
sees half a chunk and an interrupted build resumes from the chunks it finished (:mod:`xloc.sim.corpus` builds
corpora). Pretraining reads a corpus through :meth:`ChannelCorpus.batches`: it holds at most ``buffer_chunks``
chunks in memory whatever the corpus size, and its batch order is a pure function of ``(seed, epoch)``, so a run
resumed at step ``s`` sees the same batches as one that never stopped.

:meth:`ChannelCorpus.from_arrays` wraps channels already in memory (the fingerprints ``xloc pretrain --data``
reads) in the same interface.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from xloc.errors import DataValidationError, FileFormatError
from xloc.io import atomic_write_text, read_json, user_umask

__all__ = ["ChunkInfo", "ChannelCorpus", "write_chunk", "chunk_power_stats", "CORPUS_FORMAT_VERSION", "MANIFEST"]

CORPUS_FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk of a corpus.

    ``power_mean_db`` and ``power_m2_db2`` are the mean and the sum of squared deviations of the channels' mean
    power gain [dB] (combined over chunks without reading them); ``attrs`` the radio and layout settings.
    """

    file: str
    n: int
    antennas: int
    subcarriers: int
    source: str
    has_view: bool
    power_mean_db: float
    power_m2_db2: float
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def grid(self) -> tuple[int, int]:
        return (self.antennas, self.subcarriers)


def chunk_power_stats(csi: np.ndarray) -> tuple[float, float]:
    """Mean [dB] and sum of squared deviations [dB^2] of the per-channel mean power of ``csi`` ``(n, M, K)``."""
    power_db = 10 * np.log10(np.maximum((np.abs(csi) ** 2).mean(axis=(1, 2)), 1e-30))
    mean = float(power_db.mean())
    return mean, float(((power_db - mean) ** 2).sum())


def _validate(csi: np.ndarray, where: str) -> np.ndarray:
    csi = np.asarray(csi)
    if csi.ndim != 3 or not np.iscomplexobj(csi):
        raise DataValidationError(f"{where}: channels must be complex (n, antennas, subcarriers), got {csi.dtype} "
                                  f"{csi.shape}")
    if len(csi) == 0:
        raise DataValidationError(f"{where}: no channels")
    if not np.isfinite(csi).all():
        raise DataValidationError(f"{where}: channels hold NaN or infinite values")
    return csi.astype(np.complex64, copy=False)


def write_chunk(folder: str | os.PathLike[str], name: str, csi: np.ndarray, view: np.ndarray | None, *,
                source: str, attrs: dict[str, Any] | None = None) -> ChunkInfo:
    """Write the chunk file ``folder/name`` atomically and return its manifest entry (the caller records it with
    :meth:`ChannelCorpus.write_manifest`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csi = _validate(csi, f"{folder / name}: csi")
    if view is not None:
        view = _validate(view, f"{folder / name}: csi_view")
        if view.shape != csi.shape:
            raise DataValidationError(f"{folder / name}: csi_view {view.shape} must match csi {csi.shape}")
    tmp = folder / f".{name}.tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("csi", data=csi)
            if view is not None:
                f.create_dataset("csi_view", data=view)
            f.attrs["source"] = source
        os.chmod(tmp, 0o666 & ~user_umask())
        os.replace(tmp, folder / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    mean, m2 = chunk_power_stats(csi)
    return ChunkInfo(name, int(len(csi)), int(csi.shape[1]), int(csi.shape[2]), source, view is not None, mean, m2,
                     dict(attrs or {}))


@dataclass(frozen=True)
class _Batch:
    """Where one batch's rows come from: a group of chunks, one grid, rows ``[start, stop)`` of the group's
    shuffled rows of that grid."""

    group: int
    grid: tuple[int, int]
    start: int
    stop: int


class ChannelCorpus:
    """Unlabelled channels, in chunks, streamed as shuffled same-grid batches.

    Parameters
    ----------
    chunks : list of ChunkInfo
        The manifest entries (:meth:`open`) or in-memory chunks (:meth:`from_arrays`).
    folder : Path or None
        Where the chunk files are; ``None`` for in-memory chunks.
    buffer_chunks : int
        Chunks loaded at a time: a batch mixes the channels of up to this many chunks (layouts), and memory is
        bounded by ``buffer_chunks`` chunks whatever the corpus size.
    """

    def __init__(self, chunks: Sequence[ChunkInfo], folder: Path | None = None, buffer_chunks: int = 8,
                 arrays: Sequence[tuple[np.ndarray, np.ndarray | None]] | None = None) -> None:
        if not chunks:
            raise DataValidationError(f"{folder or 'corpus'}: the corpus has no chunks")
        if buffer_chunks < 1:
            raise DataValidationError(f"buffer_chunks must be >= 1, got {buffer_chunks}")
        self.chunks = list(chunks)
        self.folder = folder
        self.buffer_chunks = int(buffer_chunks)
        self._arrays = list(arrays) if arrays is not None else None

    # --- construction ----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | os.PathLike[str], buffer_chunks: int = 8) -> ChannelCorpus:
        """The corpus in ``folder`` (its ``manifest.json``); a clear error for anything else."""
        folder = Path(folder)
        chunks = cls.read_manifest(folder)
        for c in chunks:
            if not (folder / c.file).is_file():
                raise FileFormatError(f"{folder / MANIFEST}: chunk file {c.file} is missing")
        return cls(chunks, folder, buffer_chunks)

    @staticmethod
    def read_manifest(folder: str | os.PathLike[str]) -> list[ChunkInfo]:
        """The chunk entries of ``folder/manifest.json`` (whether or not their files are there)."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise FileFormatError(f"{folder}: not a channel corpus (no {MANIFEST}; build one with 'xloc corpus')")
        doc = read_json(path)
        if not isinstance(doc, dict) or doc.get("format") != "xloc-corpus":
            raise FileFormatError(f"{path}: not an xloc corpus manifest")
        if int(doc.get("format_version", -1)) > CORPUS_FORMAT_VERSION:
            raise FileFormatError(f"{path}: corpus format {doc['format_version']} is newer than this xloc reads")
        try:
            return [ChunkInfo(**c) for c in doc["chunks"]]
        except (KeyError, TypeError) as exc:
            raise FileFormatError(f"{path}: malformed chunk entry: {exc}") from None

    @classmethod
    def from_arrays(cls, arrays: Sequence[tuple[np.ndarray, np.ndarray | None]], names: Sequence[str] | None = None,
                    buffer_chunks: int = 8) -> ChannelCorpus:
        """In-memory chunks ``[(csi, view or None), ...]``, each ``(n, M, K)`` complex."""
        infos, kept = [], []
        for i, (csi, view) in enumerate(arrays):
            where = names[i] if names is not None else f"chunk {i}"
            csi = _validate(csi, where)
            if view is not None:
                view = _validate(view, f"{where} (views)")
                if view.shape != csi.shape:
                    raise DataValidationError(f"{where}: views {view.shape} must match the channels {csi.shape}")
            mean, m2 = chunk_power_stats(csi)
            infos.append(ChunkInfo(where, len(csi), csi.shape[1], csi.shape[2], "memory", view is not None, mean, m2))
            kept.append((csi, view))
        return cls(infos, None, buffer_chunks, kept)

    @staticmethod
    def write_manifest(folder: str | os.PathLike[str], chunks: Sequence[ChunkInfo], **extra: Any) -> Path:
        """Write ``folder/manifest.json`` atomically (``extra``: how the corpus was built)."""
        doc = {"format": "xloc-corpus", "format_version": CORPUS_FORMAT_VERSION, **extra,
               "n_channels": int(sum(c.n for c in chunks)), "chunks": [asdict(c) for c in chunks]}
        return atomic_write_text(Path(folder) / MANIFEST, json.dumps(doc, indent=1))

    # --- what it holds ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return sum(c.n for c in self.chunks)

    @property
    def grids(self) -> list[tuple[int, int]]:
        """The distinct ``(antennas, subcarriers)`` grids, sorted."""
        return sorted({c.grid for c in self.chunks})

    @property
    def nbytes(self) -> int:
        """Bytes of the channels and views (complex64) -- what loading it all would take."""
        return sum(c.n * c.antennas * c.subcarriers * 8 * (2 if c.has_view else 1) for c in self.chunks)

    def power_stats(self) -> tuple[float, float]:
        """Mean and standard deviation [dB] of the per-channel mean power over the corpus (chunk statistics
        combined exactly, Chan et al.'s parallel update; no chunk is read)."""
        n, mean, m2 = 0, 0.0, 0.0
        for c in self.chunks:
            delta = c.power_mean_db - mean
            total = n + c.n
            mean += delta * c.n / total
            m2 += c.power_m2_db2 + delta**2 * n * c.n / total
            n = total
        return mean, float(np.sqrt(m2 / max(n - 1, 1)))

    # --- streaming -------------------------------------------------------------------------------------------
    def _groups(self, epoch: int, seed: int) -> list[np.ndarray]:
        order = np.random.default_rng([seed, 61, epoch]).permutation(len(self.chunks))
        return [order[i : i + self.buffer_chunks] for i in range(0, len(order), self.buffer_chunks)]

    def plan(self, batch_size: int, epoch: int, seed: int) -> list[_Batch]:
        """The batches of ``epoch`` in order, from the manifest alone: chunks are visited in a seeded order,
        ``buffer_chunks`` at a time; each group's channels of one grid are shuffled and cut into full batches
        (the remainder is dropped; a grid with fewer channels than one batch makes one smaller batch), and the
        group's batches of different grids are interleaved at random."""
        if batch_size < 1:
            raise DataValidationError(f"batch_size must be >= 1, got {batch_size}")
        batches: list[_Batch] = []
        for g, members in enumerate(self._groups(epoch, seed)):
            per_grid: dict[tuple[int, int], int] = {}
            for i in members:
                per_grid[self.chunks[i].grid] = per_grid.get(self.chunks[i].grid, 0) + self.chunks[i].n
            mine = [_Batch(g, grid, s, s + batch_size) for grid in sorted(per_grid)
                    for s in range(0, per_grid[grid] - batch_size + 1, batch_size)]
            # A grid with fewer channels than a batch in the whole group is one smaller batch, not dropped.
            mine += [_Batch(g, grid, 0, n) for grid, n in sorted(per_grid.items()) if 2 <= n < batch_size]
            order = np.random.default_rng([seed, 62, epoch, g]).permutation(len(mine))
            batches += [mine[j] for j in order]
        return batches

    def steps(self, batch_size: int, epoch: int, seed: int) -> int:
        return len(self.plan(batch_size, epoch, seed))

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self._arrays is not None:
            return self._arrays[index]
        assert self.folder is not None
        path = self.folder / self.chunks[index].file
        try:
            with h5py.File(path, "r") as f:
                csi = f["csi"][()]
                view = f["csi_view"][()] if "csi_view" in f else None
        except (OSError, KeyError) as exc:
            raise FileFormatError(f"{path}: unreadable corpus chunk: {exc}") from None
        expected = (self.chunks[index].n, *self.chunks[index].grid)
        if csi.shape != expected:
            raise FileFormatError(f"{path}: csi is {csi.shape}, the manifest says {expected}")
        return csi, view

    def batches(self, batch_size: int, epoch: int, seed: int, start: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(csi, view)`` batches ``(batch_size, M, K)`` complex64 of ``epoch`` from batch ``start`` on (earlier
        groups are not read). ``view`` is PICL's positive (the channel itself where the chunk has no view)."""
        plan = self.plan(batch_size, epoch, seed)
        groups = self._groups(epoch, seed)
        group, rows = -1, dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]]()
        for b in plan[start:]:
            if group != b.group:
                group, rows = b.group, {}  # the previous group is released before the next is read
                rows = self._group_rows(groups[b.group], b.group, epoch, seed)
            csi, view = rows[b.grid]
            yield csi[b.start : b.stop], (csi if view is None else view)[b.start : b.stop]

    def _group_rows(self, members: np.ndarray, group: int, epoch: int, seed: int
                    ) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]]:
        """Each grid's channels (and views) of a group of chunks in a seeded shuffled order, written straight into
        one array per grid (memory: the group plus one chunk)."""
        out = {}
        grids = sorted({self.chunks[i].grid for i in members})
        for k, grid in enumerate(grids):
            mine = [int(i) for i in members if self.chunks[i].grid == grid]
            total = sum(self.chunks[i].n for i in mine)
            slot = np.empty(total, dtype=np.int64)  # slot[j]: where row j of the concatenation goes
            slot[np.random.default_rng([seed, 63, epoch, group, k]).permutation(total)] = np.arange(total)
            csi = np.empty((total, *grid), dtype=np.complex64)
            views = (np.empty_like(csi) if any(self.chunks[i].has_view for i in mine) else None)
            offset = 0
            for i in mine:
                part, view = self._load(i)
                where = slot[offset : offset + len(part)]
                csi[where] = part
                if views is not None:
                    views[where] = part if view is None else view
                offset += len(part)
            out[grid] = (csi, views)
        return out
