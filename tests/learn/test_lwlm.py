from dataclasses import replace

import numpy as np
import pytest
import torch

from xloc.bench import lwlm as lx
from xloc.errors import DataValidationError, NotFittedError
from xloc.learn.channel_tasks import TASKS, task_errors, task_samples
from xloc.learn.lwlm import LWLM, block_masks, info_nce, masked_reconstruction_loss

TINY = dict(patch=(4, 8), d_model=32, depth=2, heads=2, d_ff=64, epochs=6, batch_size=64, finetune_steps=60,
            finetune_batch=32)


@pytest.fixture(scope="module")
def city():
    return lx.city_data(replace(lx.FULL, pretrain_users=150, pool_users=100, test_users=60))


@pytest.fixture(scope="module")
def pretrained(city):
    return LWLM(seed=0, **TINY).pretrain(city.pretrain, city.views)


def test_block_masks_cover_the_ratio_in_bands_and_blocks():
    rng = np.random.default_rng(0)
    masks = block_masks(500, (8, 4), 0.4, rng)
    assert masks.shape == (500, 32)
    cover = masks.mean(1)
    assert (cover >= 0.4).all() and (cover < 1).all() and cover.mean() < 0.65
    grid = masks.reshape(500, 8, 4)
    full_rows = grid.all(2).any(1).mean()  # whole antenna bands across every subcarrier block
    full_cols = grid.all(1).any(1).mean()  # whole subcarrier bands across every antenna block
    assert full_rows > 0.1 and full_cols > 0.1
    assert not np.array_equal(masks[0], masks[1])


def test_reconstruction_loss_reads_masked_patches_only():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 6, 5, generator=g), torch.randn(4, 6, 5, generator=g)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, :2] = True
    base = masked_reconstruction_loss(pred, target, mask)
    other = pred.clone()
    other[:, 2:] += 100.0  # visible patches: no effect
    assert torch.allclose(masked_reconstruction_loss(other, target, mask), base)
    other[:, 0] += 1.0  # a masked patch: the loss moves
    assert not torch.allclose(masked_reconstruction_loss(other, target, mask), base)
    assert torch.isclose(masked_reconstruction_loss(target, target, mask), torch.tensor(0.0))


def test_info_nce_is_minimal_for_identical_positives():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    same = info_nce(z, z, 0.1)
    assert same < info_nce(z, z + 0.5 * torch.randn(16, 8, generator=g), 0.1)
    assert same < info_nce(z, z[torch.randperm(16, generator=g)], 0.1)
    # Views that differ noticeably always cost more; tiny jitter can only shave a hair (negatives also move).
    for scale in (0.5, 1.0):
        assert all(same < info_nce(z, z + scale * torch.randn(16, 8, generator=g), 0.1) for _ in range(20))
    assert all(info_nce(z, z + 0.05 * torch.randn(16, 8, generator=g), 0.1) > 0.8 * same for _ in range(20))
    assert torch.isclose(info_nce(z, 3 * z, 0.1), same)  # cosine similarity: the scale of a view is irrelevant


def test_pretraining_lowers_finetuning_loss_and_error(city, pretrained):
    assert pretrained.pretrained_ and len(pretrained.pretrain_losses_) == TINY["epochs"]
    first, last = pretrained.pretrain_losses_[0], pretrained.pretrain_losses_[-1]
    assert set(last) == {"sf-mcm", "dti", "picl"} and last["picl"] < first["picl"]
    scratch = LWLM(seed=0, **TINY)
    truth = task_samples(city.tests["A"], "toa")[1]
    out = {}
    for name, model in (("pretrained", pretrained), ("scratch", scratch)):
        m = model.finetune("toa", city.pools["A"], 0.2)
        err = task_errors("toa", lx._lwlm_answers(m, city.tests["A"], "toa"), truth).mean()
        out[name] = (np.mean(m.tasks_["toa"].losses[-20:]), err)
    assert out["pretrained"][0] < 0.8 * out["scratch"][0]
    assert out["pretrained"][1] < out["scratch"][1]


def test_every_task_predicts_in_its_unit_and_round_trips(city, pretrained, tmp_path):
    test = city.tests["A"]
    for task in TASKS:
        pretrained.finetune(task, city.pools["A"], 0.5, steps=3)
    toa, aoa = pretrained.predict(test.measurements, "toa"), pretrained.predict(test.measurements, "aoa")
    assert toa.shape == aoa.shape == (len(test), 4)
    assert 0 < np.median(toa) < 1e-6 and np.abs(aoa).max() < 2 * np.pi  # seconds, radians
    assert pretrained.predict(test.measurements, "multi-bs").shape == (len(test), 2)
    loaded = LWLM.load(pretrained.save(tmp_path / "lwlm"))
    for task in TASKS:
        assert np.allclose(loaded.predict(test.measurements, task), pretrained.predict(test.measurements, task))
    assert loaded.pretrained_ and loaded.power_stats_ == pretrained.power_stats_


def test_bad_input_gets_clear_errors(city, pretrained):
    with pytest.raises(NotFittedError):
        LWLM().predict(city.tests["A"].measurements)
    with pytest.raises(DataValidationError, match="task must be one of"):
        pretrained.finetune("range", city.pools["A"])
    with pytest.raises(DataValidationError, match="label_fraction"):
        pretrained.finetune("toa", city.pools["A"], 0.0)
    pretrained.finetune("toa", city.pools["A"], 0.5, steps=1)  # a task to predict, whichever test ran first
    with pytest.raises(DataValidationError, match="antennas x .* subcarriers"):
        pretrained.predict(city.tests["A"].measurements[:, :, :16], "toa")
    pretrained.finetune("multi-bs", city.pools["A"], 0.5, steps=1)
    with pytest.raises(DataValidationError, match="fine-tuned on 4 base stations"):
        pretrained.predict(city.tests["A"].measurements[:, :3], "multi-bs")
    with pytest.raises(DataValidationError, match="unknown objectives"):
        LWLM(objectives=("sf-mcm", "jigsaw"))
    with pytest.raises(DataValidationError, match="same users"):
        LWLM(**TINY).pretrain(city.pretrain, city.pools["A"])
