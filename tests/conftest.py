from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from xloc.data import EnvironmentMeta, Fingerprints, FingerprintSet
from xloc.data.sodindoorloc import DEFAULT_ROOT


def make_rss_env(name: str = "lab", n_points: int = 6, reps: int = 2, n_ap: int = 4, seed: int = 0) -> Fingerprints:
    rng = np.random.default_rng(seed)
    meta = EnvironmentMeta(
        name=name,
        kind="rss",
        ap_ids=tuple(f"AP{i}" for i in range(n_ap)),
        ap_positions_m=rng.uniform(0, 10, (n_ap, 2)),
        frequency_hz=2.44e9,
        grid_spacing_m=1.0,
        attrs={"note": "tiny", "floor": 1},
    )
    pos = np.repeat(rng.uniform(0, 10, (n_points, 2)), reps, axis=0)
    rss = rng.uniform(-90, -30, (n_points * reps, n_ap)).astype(np.float32)
    rss[0, 0] = np.nan
    return Fingerprints(
        meta,
        rss,
        pos,
        np.repeat(np.arange(n_points), reps),
        device=[f"d{i % 2}" for i in range(n_points * reps)],
        time_s=np.arange(n_points * reps, dtype=float),
    )


#: Optional test groups: the variable that makes their absence a failure, and what runs them.
OPTIONAL_GROUPS = {
    "data": ("XLOC_REQUIRE_DATA", "the SODIndoorLoc CSVs at ../shared/data/sodindoorloc (beside the checkout)"),
    "services": ("XLOC_REQUIRE_SERVICES", "PostgreSQL (XLOC_TEST_POSTGRES_URL) and Chromium: bash .ci/run"),
    "raytrace": ("XLOC_REQUIRE_RAYTRACE", "EXTRAS=dev,raytrace make test with Debian's libllvm19 (bash .ci/run)"),
    "federated": ("XLOC_REQUIRE_FEDERATED", "EXTRAS=dev,federated make test (bash .ci/run)"),
    "hosts": ("XLOC_REQUIRE_HOSTS", "root with ip netns and openssl (bash .ci/run sets it where namespaces work)"),
}


def skip_or_fail(group: str, reason: str) -> None:
    """Skip a test of an optional ``group`` whose requirement is missing, or fail it when the group's
    XLOC_REQUIRE_* variable says it must run (CI sets them all). Skips are listed at the end of the run."""
    variable, _ = OPTIONAL_GROUPS[group]
    if os.environ.get(variable):
        pytest.fail(f"{variable} is set but {reason}")
    pytest.skip(f"[{group}] {reason}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001 -- pytest's hook signature
    """End every run with the optional groups that were skipped and what would run them."""
    counts: dict[str, int] = {}
    skipped_list = os.environ.get("XLOC_SKIPPED_LIST")  # .ci/run's first phase: the tests its second phase runs
    if skipped_list:
        with open(skipped_list, "a", encoding="utf-8") as out:
            out.writelines(f"{r.nodeid}\n" for r in terminalreporter.stats.get("skipped", []) if r.nodeid)
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        group = reason.split("[", 1)[1].split("]", 1)[0] if "[" in reason else "other"
        counts[group] = counts.get(group, 0) + 1
    if not counts:
        terminalreporter.write_line("optional test groups: none skipped")
        return
    terminalreporter.section("skipped optional test groups")
    for group, n in sorted(counts.items()):
        variable, runs = OPTIONAL_GROUPS.get(group, ("", "see the skip reasons (pytest -rs)"))
        terminalreporter.write_line(f"{group}: {n} test(s) skipped; they run with {runs}"
                                    + (f"; {variable}=1 makes them fail instead" if variable else ""))


@pytest.fixture
def rss_env() -> Fingerprints:
    return make_rss_env()


@pytest.fixture
def rss_set() -> FingerprintSet:
    return FingerprintSet([make_rss_env("a", seed=1), make_rss_env("b", n_ap=3, seed=2)])


@pytest.fixture(scope="session")
def sod_root() -> Path:
    if not (DEFAULT_ROOT / "CETC331").is_dir():
        skip_or_fail("data", f"SODIndoorLoc is not found at {DEFAULT_ROOT}")
    return DEFAULT_ROOT


# ----------------------------------------------------------------------------- two workers (make test: pytest -n 2)
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    # two workers on two cores: one thread each, not four threads fighting over two cores
    torch.set_num_threads(1)
