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


def test_the_table_iii_report_gives_each_rooms_seed_mean_and_sample_std_with_the_papers_number_beside():
    from xloc.bench.metaloc import csi_image_markdown

    rows = [{**_row("maml", seed, mean_m), "median_m": mean_m, "p90_m": 2 * mean_m, "training_steps": steps,
             "max_steps": 7500} for seed, mean_m, steps in ((0, 2.0, 1100), (1, 3.0, 3450), (2, 4.0, 800))]
    rows.append({**_row("wknn", 0, 1.1), "median_m": 1.0, "p90_m": 2.0})
    table = csi_image_markdown(rows).splitlines()
    assert table[0].startswith("| method | hall mean [m] |") and "lab" not in table[0]
    assert table[2] == "| maml | 3.00 ± 1.00 | 3.00 ± 1.00 | 6.00 ± 2.00 | 1100, 3450, 800 | 0, 1, 2 | 2.11 |"
    assert table[3] == "| wknn | 1.10 | 1.00 | 2.00 | – | 0 | – |"  # one seed: no std; no training; no paper row


def test_the_curves_plot_draws_the_first_seeds_curves_and_nothing_without_them(tmp_path):
    from xloc.bench.metaloc import plot_csi_curves

    ts = {**_row("maml-ts"), "val_curve": {"iteration": [50, 100, 50, 100], "val_loss": [2.3, 2.1, 2.2, 2.0]},
          "training_steps": 100}
    confi = {**_row("confi"), "val_curve": {"iteration": [50, 100], "val_loss": [4.1, 3.7]}, "training_steps": 100}
    assert plot_csi_curves([ts, confi], "hall", tmp_path / "hall.png") == tmp_path / "hall.png"
    assert (tmp_path / "hall.png").stat().st_size > 10_000
    assert plot_csi_curves([ts], "lab", tmp_path / "lab.png") is None and not (tmp_path / "lab.png").exists()
