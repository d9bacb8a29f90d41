import numpy as np
import pytest
from typer.testing import CliRunner

from xloc.cli import app
from xloc.data import load_fingerprints
from xloc.data.arrays import read_arrays
from xloc.errors import DataValidationError


def test_csi_saved_by_another_simulator_reads_back_in_xloc_order(tmp_path):
    rng = np.random.default_rng(0)
    h = (rng.normal(size=(20, 16, 4)) + 1j * rng.normal(size=(20, 16, 4))).astype(np.complex64)  # (n, sc, ant)
    pos = rng.uniform(0, 50, (20, 3))
    np.savez(tmp_path / "scene.npz", h=h, rx_pos=pos, tx_pos=np.array([[0.0, 0.0, 25.0]]))
    fp = read_arrays(tmp_path / "scene.npz", csi="h", positions="rx_pos", ap_positions="tx_pos", axes=(0, 2, 1))
    assert fp.environment.kind == "csi" and fp.measurements.shape == (20, 1, 4, 16)  # one BS axis added
    assert np.array_equal(fp.measurements[:, 0], np.transpose(h, (0, 2, 1)))
    assert fp.environment.ap_positions_m.tolist() == [[0.0, 0.0, 25.0]] and fp.name == "scene"
    split = np.stack([h.real, h.imag], -1)  # (real, imaginary) on a last axis
    np.savez(tmp_path / "ri.npz", h=split, rx_pos=pos)
    assert np.allclose(read_arrays(tmp_path / "ri.npz", csi="h", positions="rx_pos").measurements[:, 0], h)
    with pytest.raises(DataValidationError, match=r"no array 'H'; it holds \['h', 'rx_pos', 'tx_pos'\]"):
        read_arrays(tmp_path / "scene.npz", csi="H", positions="rx_pos")
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "evil.npz", h=np.array([{"a": 1}], dtype=object), rx_pos=pos)
    with pytest.raises(DataValidationError, match="never unpickles"):
        read_arrays(tmp_path / "evil.npz", csi="h", positions="rx_pos")


def test_import_arrays_command_with_a_holdout(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "survey.npz", rss=rng.uniform(-90, -40, (30, 5)), xy=rng.uniform(0, 9, (30, 2)))
    r = CliRunner().invoke(app, ["import", "arrays", str(tmp_path / "survey.npz"), "-o", str(tmp_path / "s.h5"),
                                 "--rss", "rss", "--positions", "xy", "--holdout-points", "0.2"])
    assert r.exit_code == 0, r.output
    splits = load_fingerprints(tmp_path / "s.h5")
    assert len(splits["train"]["survey"]) == 24 and len(splits["test"]["survey"]) == 6


def test_importing_one_environment_at_a_time_builds_up_the_file(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("corridor1", "corridor2"):
        np.savez(tmp_path / f"{name}.npz", rss=rng.uniform(-90, -40, (10, 3)), xy=rng.uniform(0, 9, (10, 2)))
        r = CliRunner().invoke(app, ["import", "arrays", str(tmp_path / f"{name}.npz"), "-o", str(tmp_path / "s.h5"),
                                     "--rss", "rss", "--positions", "xy"])
        assert r.exit_code == 0, r.output
    # the second call adds its environment; the first one's stays (and importing it again replaces it, once)
    r = CliRunner().invoke(app, ["import", "arrays", str(tmp_path / "corridor1.npz"), "-o", str(tmp_path / "s.h5"),
                                 "--rss", "rss", "--positions", "xy"])
    assert r.exit_code == 0, r.output
    assert sorted(load_fingerprints(tmp_path / "s.h5")["train"]) == ["corridor1", "corridor2"]
