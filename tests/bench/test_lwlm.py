import numpy as np

from xloc.bench.lwlm import QUICK, run_p4

METHODS = {"lwlm", "lwlm-scratch", "cnn", "model-based"}


def test_quick_p4_writes_every_row_and_plot(tmp_path):
    seen = []
    rows = run_p4(QUICK, tmp_path, checkpoint=seen.append)
    table = [r for r in rows if r["protocol"] == "p4"]
    main = [r for r in table if r["setting"] == "layout-A"]
    assert {r["method"] for r in main} == METHODS
    assert {r["task"] for r in main} == {"toa", "aoa", "single-bs", "multi-bs"}
    assert {r["label_fraction"] for r in main if r["method"] == "lwlm"} == {0.1, 1.0}
    assert {r["method"] for r in table if r["setting"] == "ablation"} == {
        "lwlm", "lwlm without sf-mcm", "lwlm without dti", "lwlm without picl"}
    assert all(np.isfinite(r["mean"]) for r in table)
    assert all(r["unit"] == "deg" for r in table if r["task"] == "aoa")
    assert len(seen) == 3  # main, unseen, ablation
    for name in ("p4_layout-A.png", "p4_unseen-layout-B.png", "p4_ablation.png", "p4_pretraining.png"):
        assert (tmp_path / name).is_file()
