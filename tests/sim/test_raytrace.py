"""Sionna RT backend (extra xloc[raytrace]): Friis on a free-space LoS link, stored truth vs the paths, resume."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from tests.conftest import skip_or_fail
from xloc.errors import DataValidationError
from xloc.sim import raytrace
from xloc.sim.raytrace import RTBaseStation, RTConfig, simulate_raytraced

C = 299_792_458.0


def _need_sionna() -> None:
    try:
        raytrace.require_sionna()
    except DataValidationError as exc:
        skip_or_fail("raytrace", f"Sionna RT is not usable: {exc}")


def test_missing_sionna_explains_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_sionna(name, *args, **kwargs):
        if name.startswith("sionna"):
            raise ImportError("No module named 'sionna'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sionna)
    with pytest.raises(DataValidationError, match=r"pip install 'xloc\[raytrace\]'.*libllvm19"):
        raytrace.require_sionna()


def test_an_llvm_older_than_16_is_refused_before_it_aborts_the_process(monkeypatch):
    drjit = pytest.importorskip("drjit")
    monkeypatch.setattr(drjit.detail, "llvm_version", lambda: (15, 0, 6))
    try:
        import sionna.rt  # noqa: F401
    except Exception:
        skip_or_fail("raytrace", "sionna.rt does not import here")
    with pytest.raises(DataValidationError, match=r"LLVM 15\.0\.6.*>= 16"):
        raytrace.require_sionna()


def test_free_space_los_link_follows_friis():
    _need_sionna()
    users = np.array([[50.0, 0.0, 10.0], [0.0, 100.0, 10.0], [-200.0, 0.0, 10.0]])
    fp = simulate_raytraced(RTConfig(scene="empty", max_depth=0, n_subcarriers=8),
                            [RTBaseStation((0.0, 0.0, 10.0), yaw_deg=0.0, n_antennas=1)], users, name="free")
    d = np.array([50.0, 100.0, 200.0])
    amplitude = np.abs(fp.measurements[:, 0, 0]).mean(1)
    wavelength = C / 3.5e9
    assert np.allclose(amplitude, wavelength / (4 * np.pi * d), rtol=2e-3)  # |h| = lambda / (4 pi d)
    assert np.allclose(fp.labels["toa_s"][:, 0], d / C, atol=1e-11)
    # the CSI keeps the absolute delay: the phase turns by -2 pi df d / c from one subcarrier to the next
    step = np.angle(fp.measurements[:, 0, 0, 1:] / fp.measurements[:, 0, 0, :-1])
    expected = np.angle(np.exp(-2j * np.pi * (40e6 / 8) * d / C))
    assert np.allclose(step, expected[:, None], atol=1e-3)
    assert np.allclose(np.abs(np.degrees(fp.labels["aoa_rad"][:, 0])), [0.0, 90.0, 180.0], atol=1e-3)
    assert np.degrees(fp.labels["aoa_rad"][1, 0]) == pytest.approx(-90.0, abs=1e-3)  # +y is left of broadside +x
    assert fp.labels["los"].all() and (fp.labels["path_count"] == 1).all()
    assert np.allclose(fp.labels["power_db"][:, 0], 20 * np.log10(wavelength / (4 * np.pi * d)), atol=0.05)


def test_street_canyon_truth_matches_the_paths_and_resumes(tmp_path, monkeypatch):
    _need_sionna()
    bs = RTBaseStation((0.0, 0.0, 20.0), yaw_deg=90.0, n_antennas=4)
    users = np.array([[-30.0 + 10 * i, 5.0, 1.5] for i in range(6)])
    cfg = RTConfig(max_depth=1, chunk=4, n_subcarriers=16)
    fp = simulate_raytraced(cfg, [bs], users, name="canyon", cache_dir=tmp_path)
    assert fp.measurements.shape == (6, 1, 4, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk-00000000-4.npz", "chunk-00000004-2.npz"]
    los = fp.labels["los"][:, 0]
    assert los.any()
    geometric = np.linalg.norm(users - np.array(bs.position_m), axis=1)
    # A LoS user's first path is the direct ray: its delay is the distance over c, its azimuth the geometry's.
    assert np.allclose(fp.labels["toa_s"][los, 0], geometric[los] / C, atol=1e-11)
    azimuth = np.deg2rad(90.0) - np.arctan2(users[:, 1] - 0.0, users[:, 0] - 0.0)  # clockwise from broadside
    wrapped = (fp.labels["aoa_rad"][los, 0] - azimuth[los] + np.pi) % (2 * np.pi) - np.pi
    assert np.abs(wrapped).max() < 1e-4
    assert (fp.labels["path_count"][:, 0] >= los).all()
    power = 10 * np.log10((np.abs(fp.measurements[:, 0]) ** 2).mean(axis=(1, 2)))
    assert np.allclose(power, fp.labels["power_db"][:, 0], atol=1e-3)
    assert fp.environment.attrs["simulator"] == "sionna-rt" and fp.environment.attrs["max_depth"] == 1

    def no_solver(*_args, **_kwargs):
        raise AssertionError("finished chunks must be read, not solved again")

    monkeypatch.setattr(raytrace, "_solve_chunk", no_solver)
    again = simulate_raytraced(cfg, [bs], users, name="canyon", cache_dir=tmp_path)
    assert np.array_equal(again.measurements, fp.measurements)
    assert np.array_equal(again.labels["toa_s"], fp.labels["toa_s"], equal_nan=True)


def test_bad_input_is_refused():
    with pytest.raises(DataValidationError, match="users_m must be finite"):
        simulate_raytraced(RTConfig(), [RTBaseStation((0.0, 0.0, 10.0))], np.zeros((3, 2)), name="x")
    with pytest.raises(DataValidationError, match="max_depth"):
        RTConfig(max_depth=-1)


def test_csi_follows_xlocs_array_model():
    """The phase step between elements and the AoA label obey xloc's ULA (geometry.BaseStation with orientation
    yaw - 90 deg): a user 30 deg clockwise of the broadside has aoa +30 deg and a step of +pi sin 30 deg."""
    _need_sionna()
    from xloc.sim.raytrace import xloc_scene

    user = np.array([[50.0, -50.0 * np.tan(np.radians(30.0)), 1.5]])  # clockwise of broadside +x
    fp = simulate_raytraced(RTConfig(scene="empty", max_depth=0, n_subcarriers=4),
                            [RTBaseStation((0.0, 0.0, 1.5), 0.0, 4)], user, name="steer")
    h = fp.measurements[0, 0, :, 0]
    assert np.degrees(fp.labels["aoa_rad"][0, 0]) == pytest.approx(30.0, abs=1e-3)
    assert np.angle(h[1:] / h[:-1]) == pytest.approx(np.full(3, np.pi * np.sin(np.radians(30.0))), abs=1e-4)
    bs = xloc_scene(fp).base_stations[0]
    d = (user[0] - bs.position_m) / np.linalg.norm(user[0] - bs.position_m)
    assert np.degrees(np.arctan2(d @ bs.axis, d @ bs.broadside)) == pytest.approx(30.0, abs=1e-3)
