"""DeepMIMO v4 folders: written here from xloc's own paths in DeepMIMO's conventions, read back, and the channel
must equal the one xloc computes from the same paths (so every unit and angle convention is checked)."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from xloc.errors import DataValidationError, DataWarning
from xloc.sim.channel import simulate_channels
from xloc.sim.deepmimo import deepmimo_transmitters, read_deepmimo
from xloc.sim.geometry import BaseStation
from xloc.sim.paths import solve_paths
from xloc.sim.scenarios import build_outdoor


def _scene():
    env = build_outdoor("o1", 0)[0]
    bs = env.scene.base_stations[0]
    second = BaseStation((90.0, -12.0, 8.0), orientation_rad=bs.orientation_rad, n_horizontal=bs.n_horizontal,
                         spacing_wavelengths=bs.spacing_wavelengths)
    return env, replace(env.scene, base_stations=(bs, second))


def _write_scenario(folder: Path, scene, users: np.ndarray, *, v73: bool = False) -> None:
    """DeepMIMO v4's layout and units: dBW, degrees, zenith angle, NaN for unused path slots."""
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps({"rt_params": {"frequency": scene.carrier_hz}}))
    for t, bs in enumerate(scene.base_stations):
        paths = solve_paths(scene, bs, users)
        v = paths.valid
        code = f"t001_tx{t:03d}_r000"
        d = paths.departure
        matrices = {
            "rx_pos": users, "tx_pos": np.asarray(bs.position_m)[None],
            "delay": np.where(v, paths.delay_s, np.nan),
            "power": np.where(v, 20 * np.log10(np.maximum(np.abs(paths.gain), 1e-300)), np.nan),
            "phase": np.where(v, np.rad2deg(np.angle(paths.gain)), np.nan),
            "aod_az": np.where(v, np.rad2deg(np.arctan2(d[..., 1], d[..., 0])), np.nan),
            "aod_el": np.where(v, np.rad2deg(np.arccos(np.clip(d[..., 2], -1, 1))), np.nan),
            "inter": np.where(v, np.where(paths.kind == 0, 0, 1)[None].repeat(len(users), 0), -1),
        }
        for name, value in matrices.items():
            path = folder / f"{name}_{code}.mat"
            if v73 and name == "delay":  # MATLAB v7.3 (HDF5, column-major)
                with h5py.File(path, "w", userblock_size=512) as f:
                    f.create_dataset(name, data=value.T)
                with open(path, "r+b") as f:
                    f.write(b"MATLAB 7.3 MAT-file, written by the test".ljust(116))
            else:
                scipy.io.savemat(path, {name: value})


def test_channels_equal_xloc_channels_from_the_same_paths(tmp_path: Path) -> None:
    env, scene = _scene()
    users = env.draw_users(40, np.random.default_rng(0))
    _write_scenario(tmp_path / "O1_test", scene, users, v73=True)
    assert deepmimo_transmitters(tmp_path / "O1_test") == [0, 1]
    bs = scene.base_stations[0]
    fp = read_deepmimo(tmp_path / "O1_test", bandwidth_hz=scene.bandwidth_hz, n_subcarriers=scene.n_subcarriers,
                       n_antennas=bs.n_antennas, spacing_wavelengths=bs.spacing_wavelengths,
                       orientation_rad=bs.orientation_rad)
    truth = simulate_channels(scene, users)
    assert fp.environment.name == "O1_test" and fp.environment.frequency_hz == scene.carrier_hz
    assert fp.measurements.shape == truth.csi.shape
    scale = np.abs(truth.csi).max()
    assert np.abs(fp.measurements - truth.csi).max() < 1e-4 * scale
    np.testing.assert_allclose(fp.positions_m, users)
    np.testing.assert_allclose(fp.labels["toa_s"], truth.toa_s, rtol=1e-9)
    np.testing.assert_allclose(fp.labels["aoa_rad"], truth.aoa_rad, atol=1e-9)
    np.testing.assert_array_equal(fp.labels["los"], truth.los)
    np.testing.assert_allclose(fp.environment.ap_positions_m, [b.position_m for b in scene.base_stations])


def test_subset_noise_and_unreached_users(tmp_path: Path) -> None:
    env, scene = _scene()
    users = env.draw_users(30, np.random.default_rng(1))
    folder = tmp_path / "scn"
    _write_scenario(folder, scene, users)
    for t in (0, 1):  # user 3 gets no path at all, as DeepMIMO writes receivers nothing reaches
        for name in ("delay", "power", "phase", "aod_az", "aod_el"):
            path = folder / f"{name}_t001_tx{t:03d}_r000.mat"
            value = scipy.io.loadmat(path)[name]
            value[3] = np.nan
            scipy.io.savemat(path, {name: value})
    with pytest.warns(DataWarning, match="1 of 30 receivers have no path"):
        fp = read_deepmimo(folder, n_antennas=8, n_subcarriers=16, transmitters=[1], snr_db=10.0, seed=3)
    assert fp.measurements.shape == (29, 1, 8, 16) and fp.environment.ap_ids == ("BS1",)
    assert not np.isclose(fp.positions_m, users[3]).all(1).any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        sub = read_deepmimo(folder, n_antennas=8, n_subcarriers=16, max_users=10, seed=0, carrier_hz=3.5e9)
    assert len(sub) <= 10 and sub.environment.frequency_hz == 3.5e9


def test_bad_folders_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="not a folder"):
        read_deepmimo(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match=r"no delay_t001_tx\*_r000\.mat"):
        read_deepmimo(tmp_path / "empty")
    env, scene = _scene()
    users = env.draw_users(5, np.random.default_rng(2))
    _write_scenario(tmp_path / "s", scene, users)
    (tmp_path / "s" / "params.json").unlink()
    with pytest.raises(DataValidationError, match="give the carrier"):
        read_deepmimo(tmp_path / "s")
    (tmp_path / "s" / "aod_el_t001_tx001_r000.mat").unlink()
    with pytest.raises(DataValidationError, match="aod_el_t001_tx001_r000.mat"):
        read_deepmimo(tmp_path / "s", carrier_hz=3.5e9)
    (tmp_path / "s" / "phase_t001_tx000_r000.mat").write_bytes(b"not matlab")
    with pytest.raises(DataValidationError, match="phase_t001_tx000_r000.mat: not a readable MATLAB file"):
        read_deepmimo(tmp_path / "s", carrier_hz=3.5e9, transmitters=[0])


def test_cli_imports_a_scenario_with_a_holdout(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xloc.cli import app
    from xloc.data.storage import load_fingerprints

    env, scene = _scene()
    _write_scenario(tmp_path / "O1_3p5", scene, env.draw_users(60, np.random.default_rng(4)))
    out = tmp_path / "o1.h5"
    result = CliRunner().invoke(app, ["import", "deepmimo", str(tmp_path / "O1_3p5"), "-o", str(out), "--tx", "0",
                                      "--antennas", "16", "--subcarriers", "8", "--holdout-points", "0.25"])
    assert result.exit_code == 0, result.output
    splits = load_fingerprints(out)
    assert sorted(splits) == ["test", "train"]
    train, test = splits["train"]["O1_3p5"], splits["test"]["O1_3p5"]
    assert len(train) + len(test) == 60 and train.measurements.shape[1:] == (1, 16, 8)
    bad = CliRunner().invoke(app, ["import", "deepmimo", str(tmp_path / "nowhere"), "-o", str(out)])
    assert bad.exit_code != 0 and "not a folder" in bad.output and "Traceback" not in bad.output
