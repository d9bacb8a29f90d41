"""How federated messages travel: packed arrays, and Flower's fixed waits shortened (xloc.learn.federated.protocol,
xloc.learn.federated.waits)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from tests.conftest import skip_or_fail
from xloc.errors import DataValidationError
from xloc.learn import federated
from xloc.learn.federated.protocol import to_arrays, to_tensors
from xloc.learn.federated.waits import Backoff, capped_time, shorten_object_pulls


def _need_flwr() -> None:
    try:
        federated.require_flwr()
    except DataValidationError:
        skip_or_fail("federated", "Flower is not installed (pip install 'xloc[federated]')")


def test_packed_arrays_travel_exactly_in_their_own_dtypes_as_one_array():
    _need_flwr()
    from flwr.app import RecordDict

    rng = np.random.default_rng(0)
    params = {"w": torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32)),
              "x": torch.from_numpy(rng.normal(size=7)),  # float64
              "n": torch.arange(5), "empty": torch.zeros(0, 2)}
    content = RecordDict(to_arrays(params))
    assert list(content["arrays"].keys()) == ["packed"]  # one object on the wire, not one per tensor
    back = to_tensors(content)
    assert list(back) == list(params)
    for k, v in params.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v), k


def test_a_layout_that_does_not_match_its_values_is_refused():
    _need_flwr()
    from flwr.app import ConfigRecord, RecordDict

    records = to_arrays({"w": torch.ones(3, 2)})
    records["layout"] = ConfigRecord({"names": ["w"], "shapes": "[[4, 2]]", "dtypes": ["float32"]})
    with pytest.raises(DataValidationError, match="does not match its 6 values"):
        to_tensors(RecordDict(records))


def test_backoff_starts_short_grows_to_its_cap_and_restarts_after_work(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    idle = Backoff(cap_s=0.01, first_s=0.001)
    for _ in range(12):
        idle.wait()
    assert slept[0] == 0.001 and slept == sorted(slept) and slept[-1] == 0.01
    idle.reset()
    idle.wait()
    assert slept[-1] == 0.001


def test_the_supernodes_idle_wait_is_capped_and_its_busy_wait_is_short(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    clock = capped_time(0.05)
    for _ in range(20):
        clock.sleep(3)  # Flower: 3 s after an empty pull
    assert max(slept) == 0.05 and slept[0] < 0.01
    clock.sleep(0.5)  # Flower: 0.5 s between looks for the ClientApp's reply
    assert slept[-1] <= 0.002
    clock.sleep(3)  # the next idle wait starts short again
    assert slept[-1] < 0.01
    assert clock.monotonic is time.monotonic  # the rest of the module is the real time module


def test_objects_not_stored_yet_are_asked_for_again_within_milliseconds(monkeypatch):
    _need_flwr()
    from flwr.supercore.inflatable import inflatable_utils
    from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        monkeypatch.setattr(function, "__kwdefaults__", dict(function.__kwdefaults__))  # undone after the test
    flower_patience_s = 500 * 10.0
    tries: dict[str, int] = {}

    def pull(object_id: str) -> bytes:  # each object is stored only at its third request
        tries[object_id] = tries.get(object_id, 0) + 1
        if tries[object_id] < 3:
            raise ObjectUnavailableError(object_id)
        return object_id.encode()

    shorten_object_pulls()
    t0 = time.perf_counter()
    got = inflatable_utils.pull_objects(["a", "b", "c"], pull)
    assert got == {"a": b"a", "b": b"b", "c": b"c"}
    assert time.perf_counter() - t0 < 0.5  # Flower's own backoff waits 1 + 2 s here
    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        defaults = function.__kwdefaults__
        # an object is still waited for as long as Flower would
        assert defaults["max_tries_per_object"] * defaults["backoff_cap"] == pytest.approx(flower_patience_s)


def test_a_reply_whose_objects_never_arrive_fails_within_the_bound(monkeypatch):
    """A client killed while uploading its reply: the server's pull gives up after its reply timeout."""
    _need_flwr()
    from flwr.supercore.inflatable import inflatable_utils
    from flwr.supercore.inflatable.inflatable_utils import ObjectPullError, ObjectUnavailableError

    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        monkeypatch.setattr(function, "__kwdefaults__", dict(function.__kwdefaults__))

    def never(object_id: str) -> bytes:
        raise ObjectUnavailableError(object_id)

    shorten_object_pulls(max_time_s=0.3)
    t0 = time.perf_counter()
    with pytest.raises(ObjectPullError):
        inflatable_utils.pull_objects(["a"], never)
    assert 0.25 < time.perf_counter() - t0 < 1.0


def test_privatized_gradients_are_clipped_and_noised_with_fresh_randomness():
    from xloc.learn.federated.privacy import privatize_gradient

    grads = {"w": torch.full((30, 10), 2.0), "b": torch.full((10,), -1.0)}
    norm = float(torch.sqrt(sum((g**2).sum() for g in grads.values())))
    clipped = privatize_gradient(grads, clip=1.0, noise_multiplier=0.0)
    assert float(torch.sqrt(sum((g**2).sum() for g in clipped.values()))) == pytest.approx(1.0)
    assert torch.allclose(clipped["w"], grads["w"] / norm)  # direction kept
    small = {"w": torch.full((3,), 0.01)}
    assert torch.equal(privatize_gradient(small, clip=1.0, noise_multiplier=0.0)["w"], small["w"])
    big = {"w": torch.zeros(200_000)}
    a = privatize_gradient(big, clip=0.5, noise_multiplier=2.0)["w"]
    b = privatize_gradient(big, clip=0.5, noise_multiplier=2.0)["w"]
    assert float(a.std()) == pytest.approx(1.0, rel=0.02)  # std = noise_multiplier * clip
    assert not torch.equal(a, b)  # not seeded by the run: the server knows the run's seeds


def test_epsilon_matches_the_closed_form_of_the_gaussian_mechanisms_renyi_composition():
    from xloc.learn.federated.privacy import epsilon_spent

    delta = 1e-5
    for releases, z in ((1, 2.0), (50, 4.0), (500, 20.0)):
        a = releases / (2 * (z / 2) ** 2)  # sensitivity 2C: noise multiplier z/2 per release
        closed = a + 2 * np.sqrt(a * np.log(1 / delta))  # min over alpha of a*alpha + ln(1/delta)/(alpha - 1)
        assert epsilon_spent(releases, z, delta) == pytest.approx(closed, rel=0.01), (releases, z)
    assert epsilon_spent(100, 4.0, delta) > epsilon_spent(10, 4.0, delta) > epsilon_spent(10, 8.0, delta)
    assert epsilon_spent(10, 0.0, delta) == float("inf") and epsilon_spent(0, 1.0, delta) == 0.0
