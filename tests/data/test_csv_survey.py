import numpy as np
import pytest

from xloc.data import read_survey_csv
from xloc.errors import DataValidationError

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
        ("x,y,AP1,pt\n0,0,-50,1.5\n", {"point_column": "pt"}, "not an integer id"),
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
