"""Every registered method passes check_localizer on the small problem of its first data kind, and on its other
kinds where the method has a second data path (WKNN on CSI, MetaLoc on CSI images)."""

import pytest

from xloc.methods import get, names, specs
from xloc.methods.checks import check_localizer

#: Methods that do not beat the trivial answer of the check problem at a test-sized budget, with what was measured.
#: Strict: the day one of them passes, the mark must go.
DOES_NOT_LEARN_AT_CHECK_BUDGET = {
    "iclloc": "ICLLoc does not beat the mean of its neighbourhood references in an unseen mo1 cell: 3.49 m vs "
              "3.13 m at 300 steps, 3.83 m at 600 (ALLoc 2.65 m at 200); P3 saw the same cross-scenario (0.96 vs "
              "0.92 m, o1 -> o1b)",
    "alloc-random": "ALLoc with random references does not beat their mean (the cell's centroid) in an unseen mo1 "
                    "cell at 200 steps: 25.4 m vs 23.1 m (with 240 users per cell 20.3 m vs 23.0 m); it serves as "
                    "the first step of ALLoc's iterative search, not alone",
}

#: MetaLoc's CSI-image path at a budget where it learns: 60 meta-iterations on 2 source days, adapted with the
#: inner learning rate it was meta-trained with (the RSS check's adapt_lr = 0.03 barely moves the CNN in 5 steps).
#: At the RSS check's 25 iterations the outcome flipped between vmapped and looped tasks (MAML-TS 3.39 vs 2.66 m):
#: noise, not learning. Measured on the lab room (support centroid 2.86 m on 15 test images), 2026-12-02 at 100
#: iterations: MAML 2.50, MAML-TS 1.12, MAML-DG 2.37, TL 1.58 m; 2026-12-06 at 60: MAML 2.53, MAML-TS 2.01,
#: MAML-DG 2.23 (at 40: 2.06, 2.44, 2.93 -- MAML-DG not yet). The other checks (manners, determinism, save/load)
#: run at 10 iterations, so the learning budget is fitted once, not twice.
#: TL gets 100: at 60 it was 2.78 m against the centroid's 2.86 (3 % margin; 2.65 at 80), and twice in a full CI
#: run it came out at 2.92 m -- a margin that a different order of floating-point sums flips -- while at 100 it is
#: 1.72 m (measured 2026-12-07; the full-suite difference did not reproduce in isolation).
CSI_IMAGE_CHECK_PARAMS = {"iterations": 10, "adapt_lr": None}
CSI_IMAGE_LEARN_PARAMS = {"iterations": 60}
CSI_IMAGE_LEARN_PARAMS_OF = {"tl": {"iterations": 100}}

#: Measured as above; strict: the day one of them passes, the mark must go.
IMAGES_DO_NOT_LEARN_AT_CHECK_BUDGET = {
    "ri": "3.56 m vs 2.86 m: a CNN trained on 3 images per RP from scratch (the paper's weakest baseline)",
}


def test_at_least_twenty_methods_are_registered():
    assert len(names()) >= 20


@pytest.mark.parametrize("name", names())
def test_check_localizer(name):
    if name == "centroid":  # the trivial answer by design: every other check passes, and it equals the centroid
        with pytest.raises(AssertionError, match=r"mean error (\S+) m does not beat the support centroid \(\1 m\)"):
            check_localizer(name)
        return
    if name not in DOES_NOT_LEARN_AT_CHECK_BUDGET:
        report = check_localizer(name)
        assert report.mean_m < min(report.trivial_m.values())
        return
    try:
        check_localizer(name)
    except AssertionError as exc:  # every other check passed; only the learning check may fail, as measured
        assert "does not beat" in str(exc), str(exc)
        pytest.xfail(f"{exc} -- {DOES_NOT_LEARN_AT_CHECK_BUDGET[name]}")
    pytest.fail(f"{name} now beats the trivial answers: take it off DOES_NOT_LEARN_AT_CHECK_BUDGET")


@pytest.mark.parametrize("name", ["knn", "wknn", "wknn-stale", "wknn-pooled", "map-correct"])
def test_check_localizer_on_csi(name):
    assert get(name).kinds[:2] == ("rss", "csi")
    check_localizer(name, kind="csi")


@pytest.mark.parametrize("name", [s.name for s in specs() if "csi_image" in s.kinds[1:] and s.name != "centroid"])
def test_check_localizer_on_csi_images(name):
    """MetaLoc's second data path (CSI images, Table II/III) meets the same contract as its RSS one; at the check's
    learning budget of CSI_IMAGE_LEARN_PARAMS every paradigm but RI beats the support centroid of the small lab."""
    defaults = get(name).defaults()  # MetaLoc's budget where the method has one
    params = {k: v for k, v in CSI_IMAGE_CHECK_PARAMS.items() if k in defaults}
    learn = {k: v for k, v in CSI_IMAGE_LEARN_PARAMS_OF.get(name, CSI_IMAGE_LEARN_PARAMS).items() if k in defaults}
    if name not in IMAGES_DO_NOT_LEARN_AT_CHECK_BUDGET:
        report = check_localizer(name, kind="csi_image", params=params, learn_params=learn)
        assert report.mean_m < min(report.trivial_m.values())
        return
    try:
        check_localizer(name, kind="csi_image", params=params, learn_params=learn)
    except AssertionError as exc:
        assert "does not beat" in str(exc), str(exc)
        pytest.xfail(f"{exc} -- {IMAGES_DO_NOT_LEARN_AT_CHECK_BUDGET[name]}")
    pytest.fail(f"{name} now beats the trivial answer on CSI images: take it off IMAGES_DO_NOT_LEARN_AT_CHECK_BUDGET")
