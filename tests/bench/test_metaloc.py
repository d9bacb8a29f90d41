from xloc.bench.metaloc import csi_image_table


def _row(method, seed=0, mean_m=9.0):
    return {"protocol": "metaloc-csi", "method": method, "dataset": "hall", "target": "hall-day5", "seed": seed,
            "mean_m": mean_m, "training_steps": 0}


def test_a_resumed_csi_table_keeps_finished_rows_and_runs_only_what_is_missing():
    finished = [_row("ilcl"), _row("confi"), _row("histogram-knn", seed=1), {**_row("ilcl"), "dataset": "lab",
                                                                                "target": "lab-day5"}]
    lines: list[str] = []
    rows = csi_image_table("hall", seeds=(0,), methods=(), finished=finished, log=lines.append)
    assert lines == ["metaloc-csi: hall, seed 0, histogram-knn", "metaloc-csi: hall, seed 0, wknn"]
    assert [(r["method"], r["seed"]) for r in rows] == [("ilcl", 0), ("confi", 0), ("histogram-knn", 1),
                                                        ("histogram-knn", 0), ("wknn", 0)]
    assert [r["mean_m"] for r in rows[:3]] == [9.0, 9.0, 9.0]  # kept as they were
    assert all(r["mean_m"] < 9.0 and r["k"] == 3 for r in rows[3:])  # measured now
    assert csi_image_table("hall", seeds=(0,), methods=(), finished=rows) == rows  # nothing left to run
