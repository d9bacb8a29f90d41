import numpy as np

from xloc.bench.agml import QUICK, run_p5

METHODS = {"knn", "wknn", "mlp", "agnn (labelled only)", "agnn + unlabelled", "agml + unlabelled (none)",
           "agml + unlabelled (moments)", "agml + unlabelled (coral)"}


def test_quick_p5_on_the_csi_road(tmp_path):
    rows = run_p5(QUICK, tmp_path, ["o1-drive"])
    table = [r for r in rows if r["protocol"] == "p5"]
    assert {r["method"] for r in table} == METHODS and {r["k"] for r in table} == {5, 10}
    assert all(np.isfinite(r["mean_m"]) and r["n_seeds"] == 1 for r in table)
    curve = [r for r in rows if r["protocol"] == "p5-steps"]
    assert {r["method"] for r in curve} == {"agml + unlabelled (coral)", "agnn + unlabelled"}
    assert (tmp_path / "p5_sparse_o1-drive.png").is_file() and (tmp_path / "p5_convergence_o1-drive.png").is_file()


def test_quick_p5_on_sodindoorloc(tmp_path, sod_root):
    rows = run_p5(QUICK, tmp_path, ["sodindoorloc"], root=str(sod_root))
    assert {r["target"] for r in rows} == {"SYL"} and (tmp_path / "p5_sparse_sodindoorloc.png").is_file()
