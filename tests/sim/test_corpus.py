import h5py
import numpy as np
import pytest

from xloc.data import EnvironmentMeta, Fingerprints, FingerprintSet, save_fingerprints
from xloc.data.corpus import ChannelCorpus
from xloc.sim.corpus import GRIDS, add_twins, build_corpus, random_street


def test_random_streets_vary_geometry_and_radio():
    streets = [random_street(np.random.default_rng([0, i])) for i in range(40)]
    widths = [s.attrs["half_width_m"] for s in streets]
    assert max(widths) - min(widths) > 8
    assert len({s.scene.carrier_hz for s in streets}) >= 3 and len({s.scene.bandwidth_hz for s in streets}) >= 2
    assert {(s.scene.base_stations[0].n_antennas, s.scene.n_subcarriers) for s in streets} == set(GRIDS)
    assert len({s.attrs["n_bs"] for s in streets}) == 4
    for s in streets:  # the view redraws the traffic only
        assert s.scene.surfaces == s.scene_view.surfaces and s.scene.base_stations is not None
        assert [b.position_m.tolist() for b in s.scene.base_stations] == [b.position_m.tolist()
                                                                          for b in s.scene_view.base_stations]


def test_corpus_build_resumes_from_finished_chunks_and_is_reproducible(tmp_path):
    corpus = build_corpus(tmp_path / "a", 60, chunk_channels=24)
    assert len(corpus) >= 60 and all(c.has_view and c.source == "geometric" for c in corpus.chunks)
    stamps = {c.file: (tmp_path / "a" / c.file).stat().st_mtime_ns for c in corpus.chunks}
    (tmp_path / "a" / corpus.chunks[-1].file).unlink()  # as if the run had stopped before the last chunk
    grown = build_corpus(tmp_path / "a", 100, chunk_channels=24)
    assert len(grown) >= 100
    for c in corpus.chunks[:-1]:  # finished chunks are kept, not simulated again
        assert (tmp_path / "a" / c.file).stat().st_mtime_ns == stamps[c.file]
    fresh = build_corpus(tmp_path / "b", 100, chunk_channels=24)
    assert [c.file for c in fresh.chunks] == [c.file for c in grown.chunks]
    for c in fresh.chunks:  # chunk i depends on (seed, i) only
        with h5py.File(tmp_path / "a" / c.file) as fa, h5py.File(tmp_path / "b" / c.file) as fb:
            assert np.array_equal(fa["csi"][()], fb["csi"][()]) and np.array_equal(fa["csi_view"][()],
                                                                                  fb["csi_view"][()])
    # The traffic differs between the two views of most users, the geometry not.
    csi, view = ChannelCorpus.open(tmp_path / "b")._load(0)
    assert 0 < np.mean(~np.isclose(csi, view).all(axis=(1, 2)))


@pytest.fixture
def tiny_twins(tmp_path):
    """A stand-in collection: the presets' files and splits with random channels (Sionna is not needed here)."""
    root = tmp_path / "twins"
    rng = np.random.default_rng(0)
    for name, split, grid in [("canyon", "pretrain", (8, 32)), ("canyon-cars", "pretrain", (8, 32)),
                              ("munich", "train", (8, 32)), ("etoile", "train", (8, 32)), ("office", "train", (4, 52))]:
        meta = EnvironmentMeta(name=name, kind="csi", ap_ids=("BS1", "BS2"), ap_positions_m=np.zeros((2, 3)),
                               frequency_hz=3.5e9, bandwidth_hz=40e6)
        csi = (rng.normal(size=(20, 2, *grid)) + 1j * rng.normal(size=(20, 2, *grid))).astype(np.complex64)
        fp = Fingerprints(meta, csi, rng.uniform(0, 10, (20, 3)), np.arange(20))
        save_fingerprints(root / f"{name}.h5", {split: FingerprintSet([fp]), "test": FingerprintSet([fp])})
    return root


def test_twins_join_the_corpus_without_held_out_scenes(tmp_path, tiny_twins):
    corpus = add_twins(tmp_path, tiny_twins, chunk_channels=16)
    presets = {c.attrs["preset"] for c in corpus.chunks}
    assert "canyon" in presets and not presets & {"etoile", "florence", "office", "patch-city1", "canyon-cars"}
    assert all(c.attrs["split"] != "test" for c in corpus.chunks)
    assert all(c.has_view for c in corpus.chunks if c.attrs["preset"] == "canyon")
