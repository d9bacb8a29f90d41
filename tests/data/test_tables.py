import numpy as np
import pandas as pd
import pytest

from xloc.data import Fingerprints, FingerprintSet
from xloc.data.csv_survey import read_survey_csv
from xloc.data.environment import EnvironmentMeta
from xloc.data.tables import export_fingerprints, from_frame
from xloc.errors import DataKindError, DataValidationError


@pytest.fixture
def survey(tmp_path):
    text = ("floor,x,y,AP1,AP2,phone,t\nf1,0,0,-50,,a,1\nf1,0,0,-52,-80,b,2\nf1,3,1,-60,-70,a,3\n"
            "f2,5,5,,-40,a,4\n")
    (tmp_path / "s.csv").write_text(text)
    return read_survey_csv(tmp_path / "s.csv", rss_prefix="AP", environment_column="floor", device_column="phone",
                           time_column="t")


def test_frame_round_trip_keeps_every_field(survey):
    frame = survey.to_frame()
    assert list(frame.columns) == ["environment", "point_id", "x_m", "y_m", "device", "time_s", "AP1", "AP2"]
    assert len(frame) == 4 and frame["AP2"].isna().sum() == 1 and frame["AP1"].isna().sum() == 1
    back = FingerprintSet.from_frame(frame)
    for name in survey:
        a, b = survey[name], back[name]
        assert np.array_equal(a.measurements, b.measurements, equal_nan=True)
        assert np.array_equal(a.positions_m, b.positions_m) and np.array_equal(a.point_ids, b.point_ids)
        assert list(a.device) == list(b.device) and np.array_equal(a.time_s, b.time_s)
    with pytest.raises(DataValidationError, match="position column"):
        from_frame(frame.drop(columns=["x_m"]))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_export_formats_read_back(survey, tmp_path, fmt):
    path = export_fingerprints(survey, tmp_path / f"out.{fmt}")
    if fmt == "csv":
        frame = pd.read_csv(path)
    elif fmt == "parquet":
        frame = pd.read_parquet(path)
    else:
        with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickles
            assert np.array_equal(npz["f1/measurements"], survey["f1"].measurements, equal_nan=True)
            assert npz["f2/ap_ids"].tolist() == ["AP1", "AP2"] and npz["f1/device"].tolist() == ["a", "b", "a"]
        return
    back = from_frame(frame)
    assert np.allclose(back["f1"].measurements, survey["f1"].measurements, equal_nan=True)
    assert back["f2"].positions_m.tolist() == [[5.0, 5.0]]


def test_export_refuses_unknown_formats_and_csi_tables(survey, tmp_path):
    with pytest.raises(DataValidationError, match="not one of csv, parquet, npz"):
        export_fingerprints(survey, tmp_path / "out.xlsx")
    assert not (tmp_path / "out.xlsx").exists()
    rng = np.random.default_rng(0)
    csi = Fingerprints(EnvironmentMeta(name="cell", kind="csi", ap_ids=("bs0",)),
                       (rng.normal(size=(3, 1, 2, 4)) + 1j * rng.normal(size=(3, 1, 2, 4))).astype(np.complex64),
                       rng.uniform(0, 9, (3, 2)), [0, 1, 2])
    with pytest.raises(DataKindError, match="not tabular: export it as npz"):
        export_fingerprints(FingerprintSet([csi]), tmp_path / "cell.csv")
    path = export_fingerprints(FingerprintSet([csi]), tmp_path / "cell.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert np.array_equal(npz["cell/measurements"], csi.measurements)
