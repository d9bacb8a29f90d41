import math

import numpy as np
import pytest

from xloc.errors import DataValidationError
from xloc.sim.channel import simulate_channels
from xloc.sim.geometry import BaseStation, Scatterer, Scene, ground, wall
from xloc.sim.paths import PATH_KINDS, solve_paths
from xloc.sim.rain import rain_coefficients, rain_specific_attenuation_db_per_km

C = 299_792_458.0


def single_bs_scene(**kwargs):
    bs = BaseStation([0.0, 0.0, 10.0], n_horizontal=kwargs.pop("n_antennas", 1))
    return Scene(3.5e9, 40e6, 16, (bs,), **kwargs), bs


def test_free_space_gain_matches_friis_and_toa():
    scene, _ = single_bs_scene()
    data = simulate_channels(scene, np.array([[100.0, 0.0, 10.0], [30.0, 40.0, 10.0]]))
    lam = C / 3.5e9
    np.testing.assert_allclose(np.abs(data.csi[0, 0, 0]) ** 2, (lam / (4 * math.pi * 100)) ** 2, rtol=1e-4)
    np.testing.assert_allclose(np.abs(data.csi[1, 0, 0]) ** 2, (lam / (4 * math.pi * 50)) ** 2, rtol=1e-4)
    np.testing.assert_allclose(data.toa_s[:, 0], [100 / C, 50 / C])
    assert data.los.all() and (data.path_count == 1).all()


def test_single_reflector_gives_image_method_delay():
    scene, bs = single_bs_scene(surfaces=(ground((-500, 500), (-500, 500)),))
    paths = solve_paths(scene, bs, np.array([[100.0, 0.0, 2.0]]))
    kinds = paths.kind
    refl = paths.delay_s[0, kinds == PATH_KINDS["reflection1"]]
    # the image of the BS at z = -10: length sqrt(100^2 + 12^2)
    np.testing.assert_allclose(refl, [math.hypot(100.0, 12.0) / C])
    assert paths.valid[0].sum() == 2


def test_wall_reflection_needs_bounce_point_on_the_wall():
    short = wall((40.0, 5.0), (60.0, 5.0), 20.0)
    scene, bs = single_bs_scene(surfaces=(short,))
    hit = solve_paths(scene, bs, np.array([[100.0, 0.0, 10.0]]))  # bounce at x = 50: on the wall
    miss = solve_paths(scene, bs, np.array([[200.0, 0.0, 10.0]]))  # bounce at x = 100: beyond its end
    assert hit.valid[0, hit.kind == 1].all() and not miss.valid[0, miss.kind == 1].any()
    np.testing.assert_allclose(hit.delay_s[0, hit.kind == 1], [math.hypot(100.0, 10.0) / C])


def test_blocked_los_disappears_and_user_inside_blocker_is_not_blocked_by_it():
    blocker = Scatterer([50.0, 0.0, 1.0], rcs_m2=0.0, radius_m=2.0, height_m=20.0)
    scene, _ = single_bs_scene(scatterers=(blocker,))
    data = simulate_channels(scene, np.array([[100.0, 0.0, 2.0], [100.0, 10.0, 2.0], [50.5, 0.0, 2.0]]))
    assert data.los.tolist() == [[False], [True], [True]]
    assert data.path_count[0, 0] == 0 and np.isnan(data.toa_s[0, 0]) and np.abs(data.csi[0]).max() == 0


def test_low_blocker_does_not_block_a_path_passing_over_it():
    car = Scatterer([50.0, 0.0, 1.0], rcs_m2=0.0, radius_m=2.0, height_m=1.5)
    scene, _ = single_bs_scene(scatterers=(car,))
    assert simulate_channels(scene, np.array([[100.0, 0.0, 10.0]])).los[0, 0]


def test_scatterer_path_follows_bistatic_radar_equation():
    sc = Scatterer([50.0, 30.0, 10.0], rcs_m2=4.0, phase_rad=0.3)
    scene, bs = single_bs_scene(scatterers=(sc,))
    paths = solve_paths(scene, bs, np.array([[100.0, 0.0, 10.0]]))
    g = paths.gain[0, paths.kind == PATH_KINDS["scatter"]][0]
    d1 = d2 = math.hypot(50.0, 30.0)
    lam = C / 3.5e9
    assert abs(g) == pytest.approx(lam * 2.0 / ((4 * math.pi) ** 1.5 * d1 * d2))
    assert np.angle(g) == pytest.approx(0.3)


def _rich_scene():
    bs = BaseStation([0.0, -10.0, 6.0], n_horizontal=8)
    surfaces = (wall((-50, 12), (150, 12), 20), wall((-50, -12), (150, -12), 20), ground((-60, 160), (-15, 15)))
    scatterers = tuple(Scatterer([x, 8.0, 3.0], rcs_m2=2.0, phase_rad=x) for x in (10.0, 40.0, 70.0))
    return Scene(3.5e9, 40e6, 16, (bs,), surfaces, scatterers)


def test_spatial_consistency():
    scene = _rich_scene()
    users = np.array([[50.0, 0.0, 2.0], [50.01, 0.0, 2.0], [70.0, 0.0, 2.0]])
    h = simulate_channels(scene, users).csi[:, 0].reshape(3, -1)

    def corr(a, b):  # insensitive to the common carrier phase a 1 cm move adds (2 pi cm / lambda)
        return abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))

    assert corr(h[0], h[1]) > 0.99  # 1 cm apart: nearly equal
    assert corr(h[0], h[2]) < 0.5  # 20 m apart: different channels


def test_rain_attenuation_matches_p838():
    # Recommendation ITU-R P.838-3, Table 5 values at 10 and 60 GHz.
    assert rain_coefficients(10e9, "horizontal") == pytest.approx((0.01217, 1.2571), rel=1e-3)
    assert rain_coefficients(60e9, "vertical") == pytest.approx((0.8515, 0.7486), rel=1e-3)
    bs = BaseStation([0.0, 0.0, 10.0], n_horizontal=1)
    users = np.array([[200.0, 0.0, 10.0]])
    dry = simulate_channels(Scene(60e9, 1.6e9, 8, (bs,)), users).csi
    for rate in (10.0, 50.0):
        wet = simulate_channels(Scene(60e9, 1.6e9, 8, (bs,), rain_rate_mm_h=rate), users).csi
        loss_db = 20 * np.log10(np.abs(dry[0, 0, 0, 0]) / np.abs(wet[0, 0, 0, 0]))
        assert loss_db == pytest.approx(0.8515 * rate**0.7486 * 0.2, rel=2e-3)
        assert loss_db == pytest.approx(rain_specific_attenuation_db_per_km(60e9, rate) * 0.2)


def test_array_response_steers_to_the_user():
    bs = BaseStation([0.0, 0.0, 0.0], orientation_rad=0.0, n_horizontal=16)
    scene = Scene(3.5e9, 40e6, 4, (bs,))
    angle = np.deg2rad(30.0)  # 30 deg off broadside (+y), towards +x
    user = np.array([[100 * np.sin(angle), 100 * np.cos(angle), 0.0]])
    data = simulate_channels(scene, user)
    h = data.csi[0, 0, :, 0]
    phase_step = np.angle(h[1:] * np.conj(h[:-1]))
    np.testing.assert_allclose(phase_step, np.pi * np.sin(angle), atol=1e-4)
    assert data.aoa_rad[0, 0] == pytest.approx(angle)


def test_bad_input():
    scene = _rich_scene()
    with pytest.raises(DataValidationError, match=r"\(N, 3\)"):
        simulate_channels(scene, np.zeros((2, 2)))
    with pytest.raises(DataValidationError, match="1-1000 GHz"):
        rain_coefficients(0.5e9)
    with pytest.raises(DataValidationError, match="in Hz"):
        Scene(3.5, 40e6, 4, (BaseStation([0, 0, 0]),))


def test_planar_array_has_vertical_phase_progression():
    bs = BaseStation([0.0, 0.0, 0.0], n_horizontal=4, n_vertical=3)
    assert bs.n_antennas == 12 and bs.element_offsets_wavelengths().shape == (12, 3)
    scene = Scene(3.5e9, 40e6, 2, (bs,))
    elev = np.deg2rad(20.0)
    user = np.array([[0.0, 100 * np.cos(elev), 100 * np.sin(elev)]])  # broadside, 20 deg up
    h = simulate_channels(scene, user).csi[0, 0, :, 0].reshape(3, 4)
    np.testing.assert_allclose(np.angle(h[1:, 0] * np.conj(h[:-1, 0])), np.pi * np.sin(elev), atol=1e-4)
    np.testing.assert_allclose(np.angle(h[0, 1:] * np.conj(h[0, :-1])), 0.0, atol=1e-4)
