"""UMinho DSI long-term site surveys: a small copy written in the upstream layout, malformed rows, the real set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import skip_or_fail
from xloc.cli import app
from xloc.data import load_fingerprints
from xloc.data.umdsi import read_umdsi
from xloc.errors import DataValidationError

SHARED_UMDSI = Path(__file__).resolve().parents[3] / "shared" / "data" / "umdsi"


def write_umdsi(root: Path, surveys: dict[str, list[tuple[str, tuple[float, float]]]]) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "coords_info.csv").write_text("1,0.0,0.0\n2,3.0,0.0\n3,6.0,0.0\n")
    for date, rows in surveys.items():
        folder = root / "data" / "site_surveys" / date
        folder.mkdir(parents=True)
        (folder / "rssis.csv").write_text("".join(f"{r}\n" for r, _ in rows))
        (folder / "coordinates.csv").write_text("".join(f"{x:.6f},{y:.6f},1.00\n" for _, (x, y) in rows))
        stamp = date.replace("-", "")
        (folder / "timestamps.csv").write_text("".join(f"{stamp}1200{i:02d}000\n" for i in range(len(rows))))
        (folder / "channels.csv").write_text("".join("\n" for _ in rows))
    return root


SURVEYS = {
    "2019-02-19": [("00000001:-50,00000002:-70", (0, 0)), ("00000001:-60,00000002:-60", (3, 0)),
                   ("00000001:-70,00000002:-50", (6, 0))],
    "2019-06-11": [("00000002:-72,10000009:-40", (0, 0)), ("00000002:-61,10000009:-55", (3, 0)),
                   ("00000002:-52,10000009:-66", (6, 0)), ("00000002:-53", (6, 0))],
}


def test_surveys_become_environments_on_the_union_of_aps(tmp_path):
    fset = read_umdsi(write_umdsi(tmp_path / "u", SURVEYS))
    assert list(fset) == ["2019-02-19", "2019-06-11"]
    first, later = fset["2019-02-19"], fset["2019-06-11"]
    assert first.environment.ap_ids == later.environment.ap_ids == ("00000001", "00000002", "10000009")
    assert np.isnan(first.measurements[:, 2]).all() and np.isnan(later.measurements[:, 0]).all()  # gone and new
    assert later.point_ids.tolist() == [0, 1, 2, 2] and first.point_ids.tolist() == [0, 1, 2]
    assert later.time_s[0] - first.time_s[0] == pytest.approx(112 * 86400)
    r = CliRunner().invoke(app, ["import", "umdsi", str(tmp_path / "u"), "-o", str(tmp_path / "u.h5"),
                                 "--holdout-points", "0.34"])
    assert r.exit_code == 0, r.output
    stored = load_fingerprints(tmp_path / "u.h5")
    assert stored["train"]["2019-06-11"].n_points == 2 and stored["test"]["2019-06-11"].n_points == 1


@pytest.mark.parametrize("row, match", [
    ("00000001-50", r"rssis.csv, row 2: '00000001-50' is not apid:rss"),
    ("00000001:+200", r"rssis.csv, row 2: AP '00000001' has RSS 200"),
])
def test_malformed_rows_are_named(tmp_path, row, match):
    bad = {"2019-02-19": [SURVEYS["2019-02-19"][0], (row, (3, 0))]}
    with pytest.raises(DataValidationError, match=match):
        read_umdsi(write_umdsi(tmp_path / "u", bad))


def test_files_of_different_lengths_and_unknown_surveys_are_refused(tmp_path):
    root = write_umdsi(tmp_path / "u", SURVEYS)
    with (root / "data" / "site_surveys" / "2019-02-19" / "coordinates.csv").open("a") as f:
        f.write("9.0,9.0,1.0\n")
    with pytest.raises(DataValidationError, match="rssis.csv has 3 rows, coordinates.csv 4"):
        read_umdsi(root)
    with pytest.raises(DataValidationError, match=r"no survey '2020-01-01'"):
        read_umdsi(root, ["2020-01-01"])


def test_the_real_surveys_import():
    if not (SHARED_UMDSI / "data" / "coords_info.csv").is_file():
        skip_or_fail("data", f"the UMinho DSI surveys are not at {SHARED_UMDSI}")
    fset = read_umdsi(SHARED_UMDSI, ["2019-02-19", "2021-04-23"])
    first, last = fset.values()
    assert first.measurements.shape[1] == last.measurements.shape[1] > 100
    assert len(first) == 520 and first.n_points == 26 and last.n_points == 48
