"""The ray-traced twin presets: the procedural office, open-ground users, BS sites, generation and loading."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.conftest import skip_or_fail
from xloc.errors import DataValidationError
from xloc.sim import raytrace
from xloc.sim.rt_presets import QUICK_SIZES, RT_PRESETS, generate_twin, load_twin
from xloc.sim.rt_scenes import ITU_MATERIALS, OfficeLayout, office_shapes, office_xml, write_office_xml


def _rt():
    try:
        return raytrace.require_sionna()
    except DataValidationError as exc:
        skip_or_fail("raytrace", f"Sionna RT is not usable: {exc}")


def test_office_walls_stay_and_furniture_moves_between_days():
    day1, day2 = office_shapes(OfficeLayout(), 1), office_shapes(OfficeLayout(), 2)
    walls = lambda shapes: [s for s in shapes if not s[0].startswith("f")]  # noqa: E731
    furniture = lambda shapes: [s for s in shapes if s[0].startswith("f")]  # noqa: E731
    assert walls(day1) == walls(day2)
    assert furniture(day1) != furniture(day2)
    assert office_shapes(OfficeLayout(), 1) == day1  # a day is reproducible
    for _, material, lo, hi in day1:
        assert material in ITU_MATERIALS
        assert all(0 <= a <= b <= 24.0 for a, b in zip(lo[:2], hi[:2], strict=True))  # inside the floor
    root = ET.fromstring(office_xml(OfficeLayout(), 1))
    assert {b.get("id") for b in root.iter("bsdf")} == set(ITU_MATERIALS)
    assert len(list(root.iter("shape"))) == len(day1)


def test_users_never_stand_in_furniture_and_walls_block_los(tmp_path):
    rt = _rt()
    from xloc.sim.rt_scenes import clearance_above_m, draw_open_users

    scene = rt.load_scene(str(write_office_xml(tmp_path, OfficeLayout(), 3)))
    users = draw_open_users(scene, (0.3, 23.7, 0.3, 13.7), 200, np.random.default_rng(0), height_m=1.0,
                            min_clearance_m=1.5)
    assert users.shape == (200, 3) and (clearance_above_m(scene, users) >= 1.5).all()
    cabinets = [s for s in office_shapes(OfficeLayout(), 3) if s[1] == "metal"]
    for _, _, lo, hi in cabinets:
        inside = ((users[:, 0] > lo[0]) & (users[:, 0] < hi[0]) & (users[:, 1] > lo[1]) & (users[:, 1] < hi[1]))
        assert not inside.any()


def test_missing_collection_says_how_to_make_it(tmp_path):
    with pytest.raises(DataValidationError, match="make twins"):
        load_twin("canyon", "train", tmp_path)
    with pytest.raises(DataValidationError, match="unknown ray-traced preset"):
        load_twin("atlantis", "train", tmp_path)


def test_canyon_and_canyon_with_cars_share_sites_and_users(tmp_path):
    _rt()
    entries = [generate_twin(name, tmp_path, QUICK_SIZES) for name in ("canyon", "canyon-cars")]
    assert all(e["users"] == QUICK_SIZES.train + QUICK_SIZES.test + QUICK_SIZES.pretrain for e in entries)
    a = next(iter(load_twin("canyon", "pretrain", tmp_path).values()))
    b = next(iter(load_twin("canyon-cars", "pretrain", tmp_path).values()))
    assert np.array_equal(a.positions_m, b.positions_m)
    assert np.array_equal(a.environment.ap_positions_m, b.environment.ap_positions_m)
    assert a.measurements.shape == (QUICK_SIZES.pretrain, 3, 8, 32)
    # the area frame: users inside the preset's area, centred on the origin
    x0, x1, y0, y1 = RT_PRESETS["canyon"].area_m
    assert (np.abs(a.positions_m[:, 0]) <= (x1 - x0) / 2).all() and (np.abs(a.positions_m[:, 1]) <= (y1 - y0) / 2).all()
    assert not np.allclose(a.measurements, b.measurements)  # the cars change the channels
    assert a.environment.attrs["delays"] == "absolute" and a.environment.attrs["array_convention"] == "xloc"
    assert generate_twin("canyon", tmp_path, QUICK_SIZES) == {"name": "canyon", "skipped": True}


def test_procedural_districts_are_reproducible_closed_boxes_with_itu_facades():
    from xloc.sim.rt_scenes import CITY_GROUND, CITY_MATERIALS, CityLayout, city_shapes, city_xml

    one, again, two = city_shapes(CityLayout(), 1), city_shapes(CityLayout(), 1), city_shapes(CityLayout(), 2)
    assert one == again and one != two
    buildings = one[1:]
    assert one[0][1] == CITY_GROUND and len(buildings) > 10
    heights = [hi[2] for _, _, _, hi in buildings]
    assert min(heights) >= 6.0 and max(heights) <= 45.0 and len({round(h) for h in heights}) > 5
    assert {m for _, m, _, _ in buildings} <= set(CITY_MATERIALS)
    assert all(lo[0] < hi[0] and lo[1] < hi[1] and lo[2] == 0.0 for _, _, lo, hi in buildings)  # boxes on the ground
    root = ET.fromstring(city_xml(CityLayout(), 1))
    assert len(list(root.iter("shape"))) == len(one)


def test_users_stand_on_open_ground_not_inside_buildings(tmp_path):
    """Regression: an older install put Florence users inside buildings (and drew them over roofs)."""
    rt = _rt()
    from xloc.sim.raytrace import _load_scene
    from xloc.sim.rt_presets import preset_users
    from xloc.sim.rt_scenes import CityLayout, city_shapes, misplaced_users, write_city_xml

    preset = RT_PRESETS["florence"]
    scene = _load_scene(rt, "florence")
    users = preset_users(rt, preset, "florence", 300, 0, "train")
    assert len(misplaced_users(scene, users)) == 0
    inside = np.array([[-22.0, -24.0, 1.5], [40.0, -20.0, 1.5]])  # the Baptistery and the cathedral's nave
    assert list(misplaced_users(scene, inside)) == [0, 1]
    # the procedural district: no user inside any building's footprint
    city = rt.load_scene(str(write_city_xml(tmp_path, CityLayout(), 1)))
    from xloc.sim.rt_scenes import draw_open_users

    users = draw_open_users(city, (-100, 100, -100, 100), 300, np.random.default_rng(0), height_m=1.5)
    for _, _, lo, hi in city_shapes(CityLayout(), 1)[1:]:
        assert not ((users[:, 0] > lo[0]) & (users[:, 0] < hi[0]) & (users[:, 1] > lo[1])
                    & (users[:, 1] < hi[1])).any()


def test_a_dense_patch_puts_references_on_its_grid_and_test_users_inside(tmp_path):
    _rt()
    from xloc.sim.rt_presets import PATCH_PRESETS

    generate_twin("patch-city1", tmp_path, QUICK_SIZES)
    preset = PATCH_PRESETS["patch-city1"]
    refs = next(iter(load_twin("patch-city1", "train", tmp_path).values()))
    test = next(iter(load_twin("patch-city1", "test", tmp_path).values()))
    x0, x1, y0, y1 = preset.area_m
    half = (x1 - x0) / 2
    step = QUICK_SIZES.patch_grid_m
    # the patch's frame: centred on the origin; references on the grid's nodes, open ones only
    offsets = (refs.positions_m[:, :2] + half) / step
    assert np.allclose(offsets, np.round(offsets), atol=1e-6)
    assert 0 < len(refs) <= (round(2 * half / step) + 1) ** 2
    assert len(test) == QUICK_SIZES.patch_test
    assert (np.abs(test.positions_m[:, :2]) <= half).all()
    assert refs.environment.ap_positions_m.shape == (3, 3)
    assert refs.environment.attrs["samples_per_src"] > 0
    track = next(iter(load_twin("patch-city1", "track", tmp_path).values())).positions_m
    assert len(track) == QUICK_SIZES.patch_track
    assert np.allclose(np.linalg.norm(np.diff(track[:, :2], axis=0), axis=1), 0.5)
