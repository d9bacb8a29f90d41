import numpy as np
import pytest

from xloc.data import FingerprintSet, load_fingerprints, save_fingerprints
from xloc.errors import DataValidationError
from xloc.sim.csi_images import csi_to_image, room_points
from xloc.sim.plot import plot_scenario
from xloc.sim.presets import SCENARIOS, scenario_scene, simulate_scenario
from xloc.sim.scenarios import build_outdoor, simulate_outdoor


@pytest.mark.parametrize("name", ["o1", "o1b", "mo1", "o1-rain", "o2"])
def test_outdoor_presets_shapes_and_ground_truth(name):
    fs = simulate_scenario(name, 12, seed=0, conditions=2)
    fp = next(iter(fs.values()))
    assert fp.environment.kind == "csi" and fp.measurements.shape == (12, 1, 32, 32)
    assert fp.environment.frequency_hz == (60e9 if name == "o1-rain" else 3.5e9)
    for key in ("los", "toa_s", "aoa_rad", "path_count", "power_db"):
        assert fp.labels[key].shape == (12, 1)
    has_path = fp.labels["path_count"][:, 0] > 0
    assert np.isfinite(fp.labels["toa_s"][has_path]).all()
    assert (fp.labels["toa_s"][has_path, 0] * 3e8 >= np.linalg.norm(
        fp.positions_m[has_path] - fp.environment.ap_positions_m[0], axis=1) - 1e-3).all()


def test_preset_environment_counts():
    assert len(simulate_scenario("mo1", 2, 0)) == 5
    assert list(simulate_scenario("o1-rain", 2, 0))[-1] == "o1-rain-100mmh"
    assert len(simulate_scenario("o2", 2, 0, conditions=4)) == 4
    assert set(SCENARIOS) >= {"o1", "o1b", "mo1", "o1-rain", "o2", "hall", "lab"}


def test_same_seed_same_output_other_seed_or_split_differs():
    a = simulate_scenario("o1b", 20, seed=3)["o1b"]
    b = simulate_scenario("o1b", 20, seed=3)["o1b"]
    c = simulate_scenario("o1b", 20, seed=4)["o1b"]
    t = simulate_scenario("o1b", 20, seed=3, split="test")["o1b"]
    np.testing.assert_array_equal(a.measurements, b.measurements)
    np.testing.assert_array_equal(a.positions_m, b.positions_m)
    assert not np.allclose(a.positions_m, c.positions_m) and not np.allclose(a.positions_m, t.positions_m)


def test_blocked_road_has_less_los_and_rain_weakens_channels():
    clear = simulate_scenario("o1", 300, seed=0)["o1"].labels["los"].mean()
    blocked = simulate_scenario("o1b", 300, seed=0)["o1b"].labels["los"].mean()
    assert clear > 0.95 and blocked < clear - 0.2
    powers = [  # the same users under every rain rate
        simulate_outdoor(env, 50, np.random.default_rng(0), preset="o1-rain", seed=0).labels["power_db"].mean()
        for env in build_outdoor("o1-rain", 0)
    ]
    assert all(np.diff(powers) < 0)


def test_rooms_make_csi_images_per_day():
    fs = simulate_scenario("hall", 90, seed=0, days=2)
    assert list(fs) == ["hall-day1", "hall-day2"]
    fp = fs["hall-day1"]
    assert fp.environment.kind == "csi_image" and fp.measurements.shape == (90, 3, 50, 52)
    assert fp.measurements.min() >= 0 and fp.measurements.max() <= 255
    np.testing.assert_array_equal(fp.measurements, np.round(fp.measurements))
    assert fp.n_points == 90 and room_points("lab").shape == (90, 3)
    lab = simulate_scenario("lab", 90, seed=0, days=1)["lab-day1"]
    assert lab.labels["los"].mean() < fp.labels["los"].mean()  # the lab is the NLOS room


def test_csi_images_vary_by_packet_but_keep_the_channel():
    rng = np.random.default_rng(0)
    csi = np.full((1, 3, 52), 1e-4 + 0j)
    img = csi_to_image(csi, rng, snr_db=30.0)
    assert img.shape == (1, 3, 50, 52) and img.std() > 0
    assert abs(img.mean() - (-80 + 110) * 255 / 70) < 3


def test_labels_survive_storage(tmp_path):
    fs = simulate_scenario("o1", 5, seed=0)
    path = save_fingerprints(tmp_path / "o1.h5", {"train": fs})
    back = load_fingerprints(path)["train"]["o1"]
    for key, value in fs["o1"].labels.items():
        np.testing.assert_array_equal(back.labels[key], value)
    np.testing.assert_array_equal(back.measurements, fs["o1"].measurements)
    assert back.subset([0, 2]).labels["los"].shape == (2, 1)


def test_plot_writes_png(tmp_path):
    fs = simulate_scenario("o1b", 30, seed=0)
    path = plot_scenario(scenario_scene("o1b", 0, "o1b"), fs["o1b"], tmp_path / "o1b.png")
    assert path.stat().st_size > 10_000


def test_errors():
    with pytest.raises(DataValidationError, match="unknown scenario"):
        simulate_scenario("o3", 5, 0)
    with pytest.raises(DataValidationError, match="n_users"):
        simulate_scenario("o1", 0, 0)
    with pytest.raises(DataValidationError, match="split"):
        simulate_scenario("o1", 5, 0, split="val")
    with pytest.raises(DataValidationError, match="no environment"):
        scenario_scene("o1", 0, "nope")
    assert isinstance(simulate_scenario("o1", 3, 0), FingerprintSet)
