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
