import json

import numpy as np
import pytest

from xloc.data.corpus import MANIFEST, ChannelCorpus, write_chunk
from xloc.errors import DataValidationError, FileFormatError


def _channels(n, m, k, seed):
    rng = np.random.default_rng(seed)
    gain = 10 ** rng.uniform(-5, -3, (n, 1, 1))
    return (gain * (rng.normal(size=(n, m, k)) + 1j * rng.normal(size=(n, m, k)))).astype(np.complex64)


@pytest.fixture
def corpus_dir(tmp_path):
    chunks = []
    for i, (n, grid) in enumerate([(50, (8, 32)), (30, (4, 52)), (40, (8, 32)), (25, (4, 52)), (33, (8, 32))]):
        csi = _channels(n, *grid, i)
        chunks.append(write_chunk(tmp_path, f"chunk-{i:06d}.h5", csi, csi * 1j if i % 2 else None, source="test"))
    ChannelCorpus.write_manifest(tmp_path, chunks)
    return tmp_path


def test_power_statistics_combine_chunks_exactly(corpus_dir):
    corpus = ChannelCorpus.open(corpus_dir, buffer_chunks=2)
    assert len(corpus) == 178 and corpus.grids == [(4, 52), (8, 32)]
    power_db = np.concatenate([10 * np.log10((np.abs(corpus._load(i)[0]) ** 2).mean(axis=(1, 2)))
                               for i in range(len(corpus.chunks))])
    mean, std = corpus.power_stats()
    assert mean == pytest.approx(power_db.mean(), abs=1e-4) and std == pytest.approx(power_db.std(ddof=1), abs=1e-4)


def test_batches_hold_one_grid_cover_each_channel_once_and_resume_mid_epoch(corpus_dir):
    corpus = ChannelCorpus.open(corpus_dir, buffer_chunks=2)
    batches = list(corpus.batches(16, epoch=1, seed=0))
    assert len(batches) == corpus.steps(16, 1, 0) > 0
    seen = np.concatenate([b[0].reshape(len(b[0]), -1)[:, 0] for b in batches])
    assert len(np.unique(seen)) == len(seen)  # no channel twice in an epoch
    assert all(b[0].shape[0] == 16 and b[0].shape == b[1].shape for b in batches)
    assert {b[0].shape[1:] for b in batches} == {(8, 32), (4, 52)}
    # Views: the chunk's view where it has one (csi * 1j), the channel itself otherwise.
    assert all(np.allclose(v, c * 1j) or np.array_equal(v, c) for c, v in batches)
    # Same seed and epoch, same order; another epoch, another order; a start skips exactly that many batches.
    again = list(corpus.batches(16, epoch=1, seed=0, start=3))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(again, batches[3:], strict=True))
    other = list(corpus.batches(16, epoch=2, seed=0))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(other, batches, strict=False))


def test_in_memory_corpus_has_the_same_interface():
    csi = _channels(40, 4, 8, 0)
    corpus = ChannelCorpus.from_arrays([(csi, None)], ["env"])
    assert len(corpus) == 40 and corpus.grids == [(4, 8)] and corpus.steps(8, 1, 0) == 5
    with pytest.raises(DataValidationError, match="env: views \\(40, 2, 8\\) must match"):
        ChannelCorpus.from_arrays([(csi, csi[:, :2])], ["env"])
    with pytest.raises(DataValidationError, match="NaN"):
        ChannelCorpus.from_arrays([(np.full((2, 4, 8), np.nan, np.complex64), None)])


def test_broken_corpora_get_clear_errors(corpus_dir, tmp_path_factory):
    with pytest.raises(FileFormatError, match="not a channel corpus"):
        ChannelCorpus.open(tmp_path_factory.mktemp("empty"))
    doc = json.loads((corpus_dir / MANIFEST).read_text())
    (corpus_dir / "chunk-000001.h5").unlink()
    with pytest.raises(FileFormatError, match="chunk-000001.h5 is missing"):
        ChannelCorpus.open(corpus_dir)
    (corpus_dir / MANIFEST).write_text(json.dumps({**doc, "format": "other"}))
    with pytest.raises(FileFormatError, match="not an xloc corpus manifest"):
        ChannelCorpus.open(corpus_dir)
    (corpus_dir / MANIFEST).write_text("{")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        ChannelCorpus.open(corpus_dir)
