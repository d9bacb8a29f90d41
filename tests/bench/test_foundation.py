from dataclasses import replace

import numpy as np
import pytest

from xloc.bench import lwlm as lx
from xloc.bench.foundation import (
    QUICK,
    ablation_markdown,
    foundation_markdown,
    plot_ablation,
    plot_pretraining,
    pretrain_again,
    pretrain_masks_only,
    pretrain_without,
    run_foundation,
)
from xloc.errors import ConfigError
from xloc.learn.lwlm import LWLM


def test_foundation_rows_cover_every_method_task_and_fraction_and_resume(tmp_path):
    city = lx.city_data(replace(lx.QUICK, pretrain_users=30, pool_users=40, test_users=20))
    sets = {"canyon": (city.pools["A"], city.tests["A"], city.scenes["A"]),
            "office": (city.pools["B"], city.tests["B"], city.scenes["B"])}
    reference = LWLM(seed=0, patch=(4, 8), d_model=16, depth=1, heads=2, d_ff=32, epochs=1,
                     batch_size=32).pretrain(city.pretrain)
    written = []
    rows = run_foundation(reference, QUICK, sets=sets.__getitem__, on_row=lambda r: written.append(len(r)),
                          log=lambda _text: None)
    main = [r for r in rows if r["method"] != "model-based"]
    assert len(main) == 2 * 2 * 4 * 3 and written[-1] == len(rows)  # sets x fractions x tasks x methods
    assert {r["method"] for r in rows} == {"lwlm", "lwlm-scratch", "cnn", "model-based"}
    for r in rows:
        assert r["n_los"] + r["n_nlos"] > 0 and np.isfinite(r["mean"])
        if r["n_los"] and r["n_nlos"]:  # the overall mean lies between the LoS and NLoS means
            lo, hi = sorted((r["mean_los"], r["mean_nlos"]))
            assert lo - 1e-9 <= r["mean"] <= hi + 1e-9
    # A resumed run keeps the finished rows and runs nothing again.
    again = run_foundation(reference, QUICK, sets=sets.__getitem__, finished=rows, log=lambda _text: None)
    assert again == rows
    assert plot_pretraining(reference, tmp_path / "curve.png").is_file()
    text = foundation_markdown(rows)
    assert "| canyon | multi-bs [m] | lwlm |" in text and "LWLM vs scratch" in text


def test_ablation_pretrains_without_one_objective_resumes_and_reports_beside_the_reference(tmp_path):
    city = lx.city_data(replace(lx.QUICK, pretrain_users=20, pool_users=30, test_users=12))
    sets = {"canyon": (city.pools["A"], city.tests["A"], city.scenes["A"])}
    sizes = dict(seed=0, patch=(4, 8), d_model=16, depth=1, heads=2, d_ff=32, epochs=1, batch_size=32)
    reference = LWLM(objectives=("sf-mcm", "picl"), **sizes).pretrain(city.pretrain)
    with pytest.raises(ConfigError, match="'dti'"):
        pretrain_without(reference, "dti", city.pretrain, tmp_path / "no-dti")
    variant = pretrain_without(reference, "picl", city.pretrain, tmp_path / "no-picl")
    assert variant.config.objectives == ("sf-mcm",) and variant.config.depth == reference.config.depth
    assert variant.pretrain_steps_ == reference.pretrain_steps_ and (tmp_path / "no-picl" / "meta.json").is_file()
    again = pretrain_without(reference, "picl", city.pretrain, tmp_path / "no-picl")  # finished: loaded, not rerun
    assert again.pretrain_s_ == variant.pretrain_s_
    scale = replace(QUICK, fractions=(0.1,), layouts=("canyon",))
    rows = run_foundation(reference, scale, sets=sets.__getitem__, log=lambda _text: None)
    rows = run_foundation(variant, scale, sets=sets.__getitem__, finished=rows, log=lambda _text: None,
                          label="lwlm without picl", baselines=False)
    mine = [r for r in rows if r["method"] == "lwlm without picl"]
    assert len(mine) == 4 and all(r["checkpoint"]["objectives"] == ["sf-mcm"] for r in mine)
    text = ablation_markdown(rows)
    assert text.splitlines()[0] == "| set | task | lwlm | lwlm without picl |" and len(text.splitlines()) == 6
    assert ablation_markdown([r for r in rows if r["method"] != "lwlm without picl"]) == ""
    # The yardstick: every objective again with another pretraining seed, its column after the variants'.
    with pytest.raises(ConfigError, match="seed 0"):
        pretrain_again(reference, city.pretrain, tmp_path / "seed0", seed=0)
    repeat = pretrain_again(reference, city.pretrain, tmp_path / "seed1", seed=1)
    assert repeat.config.objectives == reference.config.objectives and repeat.config.seed == 1
    assert not np.allclose(repeat.pretrain_curve_[-1]["picl"], reference.pretrain_curve_[-1]["picl"])
    rows = run_foundation(repeat, scale, sets=sets.__getitem__, finished=rows, log=lambda _text: None,
                          label="lwlm pretraining seed 1", baselines=False)
    header = ablation_markdown(rows).splitlines()[0]
    assert header == "| set | task | lwlm | lwlm without picl | lwlm pretraining seed 1 |"
    # SF-MCM's masks kept, its reconstruction dropped: no SF-MCM loss, but not the same as leaving SF-MCM out
    masks_only = pretrain_masks_only(reference, city.pretrain, tmp_path / "masks-only")
    assert not masks_only.config.reconstruct and masks_only.config.objectives == reference.config.objectives
    assert "sf-mcm" not in masks_only.pretrain_curve_[-1] and "picl" in masks_only.pretrain_curve_[-1]
    with pytest.raises(ConfigError, match="reconstruction"):
        pretrain_masks_only(masks_only, city.pretrain, tmp_path / "twice")
    rows = run_foundation(masks_only, scale, sets=sets.__getitem__, finished=rows, log=lambda _text: None,
                          label="lwlm without sf-mcm reconstruction", baselines=False)
    header = ablation_markdown(rows).splitlines()[0]
    assert header == ("| set | task | lwlm | lwlm without picl | lwlm without sf-mcm reconstruction | "
                      "lwlm pretraining seed 1 |")
    variants = {"without picl": variant, "pretraining seed 1": repeat, "without sf-mcm reconstruction": masks_only}
    assert plot_ablation(reference, variants, rows, tmp_path / "ablation.png").is_file()
