import warnings

import numpy as np
import pytest

from xloc.data import read_survey_csv
from xloc.errors import DataValidationError, DataWarning

GOOD = """building,x,y,AP1,AP2,AP3,phone
lab,0.0,0.0,-45,-70,100,p1
lab,0.0,0.0,-46,-71,100,p2
lab,0.6,0.0,-47,-68,-90,p1
hall,5,5,-60,100,-40,p1
"""


def write(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_environments_points_devices_and_sentinel(tmp_path):
    fs = read_survey_csv(write(tmp_path, GOOD), rss_prefix="AP", environment_column="building", device_column="phone")
    assert list(fs) == ["lab", "hall"]
    lab = fs["lab"]
    assert lab.measurements.shape == (3, 3) and np.isnan(lab.measurements[0, 2])
    assert lab.n_points == 2 and lab.point_ids[0] == lab.point_ids[1]  # grouped by coordinates
    assert list(lab.device) == ["p1", "p2", "p1"]
    assert fs["hall"].environment.ap_ids == ("AP1", "AP2", "AP3")


def test_explicit_columns_default_environment_and_custom_sentinel(tmp_path):
    text = "x,y,z,a,b,pt\n0,0,1,-50,-110,7\n1,0,1,-52,-60,8\n"
    fs = read_survey_csv(write(tmp_path, text), rss_columns=["a", "b"], z_column="z", point_column="pt",
                         not_heard=-110)
    fp = fs["survey"]
    assert fp.dims == 3 and fp.point_ids.tolist() == [7, 8] and np.isnan(fp.measurements[0, 1])


def test_point_names_such_as_real_surveys_use_are_numbered_in_order(tmp_path):
    text = "x,y,AP1,pt\n0,0,-50,B7\n0,0,-51,B7\n1,0,-60,-1_0\n2,0,-70,A12\n"
    fp = read_survey_csv(write(tmp_path, text), rss_prefix="AP", point_column="pt")["survey"]
    assert fp.point_ids.tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize(
    "text, kwargs, match",
    [
        ("", {}, "empty file"),
        ("x,y,AP1\n", {}, "no data rows"),
        ("x,y,AP1,AP1\n0,0,-50,-50\n", {}, "duplicate column 'AP1'"),
        ("x,AP1\n0,-50\n", {}, "missing column 'y'"),
        ("x,y,AP1\n0,0,-50\n1,0,strong\n", {}, r"row 3, column 'AP1': 'strong' is not a number"),
        ("x,y,AP1\n0,0,-50\n1,nan,-40\n", {}, r"row 3, column 'y': NaN"),
        ("x,y,AP1\n0,0,-50\n1,0,999\n", {}, r"row 3, column 'AP1': 999 is neither"),
        ("x,y,AP1\n0,0,-50\n1,0\n", {}, "row 3 has 2 cells"),
        ("x,y,AP1\n0,0,-50\n", {"rss_prefix": "MAC"}, "no column starts with"),
        ("x,y,AP1,pt\n0,0,-50,A1\n1,0,-40,\n", {"point_column": "pt"}, r"row 3, column 'pt': blank point id"),
    ],
)
def test_malformed_files_name_file_row_and_column(tmp_path, text, kwargs, match):
    kwargs = {"rss_prefix": "AP", **kwargs}
    path = write(tmp_path, text)
    with pytest.raises(DataValidationError, match=match) as info:
        read_survey_csv(path, **kwargs)
    if text:
        assert "s.csv" in str(info.value) or "rss_prefix" in match


def test_needs_exactly_one_column_selector(tmp_path):
    with pytest.raises(DataValidationError, match="exactly one"):
        read_survey_csv(write(tmp_path, GOOD), rss_prefix="AP", rss_columns=["AP1"])


def test_blank_cells_are_not_heard_and_a_time_column_reads_seconds_or_iso(tmp_path):
    text = ("x,y,AP1,AP2,t\n0,0,-50,,2026-11-30T10:00:00Z\n1,0,,-60,2026-11-30T10:00:02.5Z\n"
            "2,0,-55,-65,2026-11-30T10:00:04Z\n")
    fp = read_survey_csv(write(tmp_path, text), rss_prefix="AP", time_column="t")["survey"]
    assert np.isnan(fp.measurements[0, 1]) and np.isnan(fp.measurements[1, 0])
    assert np.allclose(np.diff(fp.time_s), [2.5, 1.5]) and fp.time_s[0] > 1.7e9
    numeric = read_survey_csv(write(tmp_path, "x,y,AP1,t\n0,0,-50,12.5\n1,0,-52,13\n", "n.csv"), rss_prefix="AP",
                              time_column="t")["survey"]
    assert numeric.time_s.tolist() == [12.5, 13.0]
    with pytest.raises(DataValidationError, match=r"row 3, column 't': 'noon'"):
        read_survey_csv(write(tmp_path, "x,y,AP1,t\n0,0,-50,1\n1,0,-52,noon\n", "b.csv"), rss_prefix="AP",
                        time_column="t")
    with pytest.raises(DataValidationError, match=r"row 3, column 'y': blank where a number is required"):
        read_survey_csv(write(tmp_path, "x,y,AP1\n0,0,-50\n1,,-52\n", "c.csv"), rss_prefix="AP")


def test_an_undeclared_sentinel_and_a_never_heard_ap_are_warned(tmp_path):
    rows = "\n".join(f"{i},0,{-50 - i},-110,-110," for i in range(8))
    path = write(tmp_path, "x,y,AP1,AP2,AP3,AP4\n" + rows + "\n")
    with pytest.warns(DataWarning) as caught:
        fp = read_survey_csv(path, rss_prefix="AP")["survey"]
    messages = [str(w.message) for w in caught]
    assert any("-110 fills over 50% of the cells of 2 RSS column(s) (AP2, AP3)" in m and "--not-heard -110" in m
               for m in messages)
    assert any("1 AP column(s) never heard (AP4)" in m for m in messages)
    assert np.nanmax(fp.measurements[:, 1]) == -110  # read as heard, as the user asked (the warning says so)
    with warnings.catch_warnings(record=True) as declared:
        warnings.simplefilter("always")
        read_survey_csv(path, rss_columns=["AP1", "AP2", "AP3"], not_heard=-110)
    assert not any("fills over" in str(w.message) for w in declared)  # declared: no sentinel warning


LONG = """scan,bssid,rssi,x,y,floor,time
s1,aa,-50,0,0,f1,2026-11-30T10:00:00Z
s1,bb,-70,0,0,f1,2026-11-30T10:00:00Z
s1,bb,-65,0,0,f1,2026-11-30T10:00:00Z
s2,bb,-60,3,0,f1,2026-11-30T10:00:05Z
s2,cc,,3,0,f1,2026-11-30T10:00:05Z
s1,cc,-80,9,9,f2,2026-11-30T11:00:00Z
"""


def test_long_format_pivots_scans_keeps_the_strongest_and_checks_each_scan(tmp_path):
    from xloc.data.csv_survey import read_long_csv

    fs = read_long_csv(write(tmp_path, LONG), ap_column="bssid", rss_column="rssi", environment_column="floor",
                       time_column="time")
    assert list(fs) == ["f1", "f2"]
    f1 = fs["f1"]
    assert f1.environment.ap_ids == ("aa", "bb", "cc")  # every AP in the file, first-seen order
    assert np.allclose(f1.measurements, [[-50, -65, np.nan], [np.nan, -60, np.nan]], equal_nan=True)
    assert f1.positions_m.tolist() == [[0, 0], [3, 0]] and f1.time_s[1] - f1.time_s[0] == 5
    assert np.allclose(fs["f2"].measurements, [[np.nan, np.nan, -80]], equal_nan=True)  # same scan id, other floor
    moved = LONG.replace("s1,bb,-65,0,0", "s1,bb,-65,1,0")
    with pytest.raises(DataValidationError, match=r"row 4: scan 's1' has another position than on row 2"):
        read_long_csv(write(tmp_path, moved, "m.csv"), ap_column="bssid", rss_column="rssi",
                      environment_column="floor")


def test_holdout_splits_by_reference_point(tmp_path):
    from xloc.data.csv_survey import holdout_points

    rows = "\n".join(f"{i % 10},0,{-40 - i % 10}" for i in range(30))  # 10 points, 3 samples each
    fs = read_survey_csv(write(tmp_path, "x,y,AP1\n" + rows + "\n"), rss_prefix="AP")
    train, test = holdout_points(fs, 0.3, seed=1)
    tr, te = train["survey"], test["survey"]
    assert te.n_points == 3 and tr.n_points == 7 and len(te) == 9 and len(tr) == 21
    assert not set(tr.positions_m[:, 0]) & set(te.positions_m[:, 0])  # no point on both sides
    with pytest.raises(DataValidationError, match="fraction"):
        holdout_points(fs, 1.0)
