import numpy as np
import pytest

from xloc.data import EnvironmentMeta
from xloc.errors import DataValidationError


def test_valid_metadata_is_frozen_and_comparable():
    meta = EnvironmentMeta("lab", "rss", ("a", "b"), ap_positions_m=[[0, 0], [1, np.nan]], frequency_hz=2.4e9)
    assert meta.n_aps == 2
    assert meta == EnvironmentMeta("lab", "rss", ("a", "b"), ap_positions_m=[[0, 0], [1, np.nan]], frequency_hz=2.4e9)
    assert meta != EnvironmentMeta("lab", "rss", ("a", "b"), frequency_hz=2.4e9)
    sub = meta.with_aps([1])
    assert sub.ap_ids == ("b",) and sub.ap_positions_m.shape == (1, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": ""}, "non-empty"),
        ({"kind": "wifi"}, "kind must be one of"),
        ({"ap_ids": ("a", "a")}, "duplicate AP ids"),
        ({"frequency_hz": 2.4}, "below 1 MHz"),
        ({"frequency_hz": -1.0}, "positive"),
        ({"ap_positions_m": np.zeros((3, 2))}, r"shape \(2, 2\|3\)"),
        ({"ap_positions_m": np.array([[0, np.inf], [0, 0]])}, "infinite"),
        ({"ap_frequency_hz": [2400.0, 5000.0]}, "in Hz"),
        ({"attrs": {"bad": [1, 2]}}, "attribute 'bad'"),
    ],
)
def test_invalid_metadata_is_rejected(kwargs, match):
    base = {"name": "lab", "kind": "rss", "ap_ids": ("a", "b")}
    base.update(kwargs)
    with pytest.raises(DataValidationError, match=match):
        EnvironmentMeta(**base)
