import copy
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
    assert set(last) == {"sf-mcm", "dti", "picl", "sf-mcm-mean"} and last["picl"] < first["picl"]
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
    with pytest.raises(DataValidationError, match="reconstruct=False .* another objective"):
        LWLM(objectives=("sf-mcm",), reconstruct=False)
    with pytest.raises(DataValidationError, match="reconstruct=False .* 'sf-mcm'"):
        LWLM(objectives=("picl", "dti"), reconstruct=False)
    with pytest.raises(DataValidationError, match="same users"):
        LWLM(**TINY).pretrain(city.pretrain, city.pools["A"])


# --- pretraining at scale: streaming, checkpoints, several radio configurations ---------------------------------
STREAM = dict(patch=(4, 4), d_model=16, depth=1, heads=2, d_ff=32, epochs=2, batch_size=32, finetune_steps=150,
              finetune_batch=32)


def _disk_corpus(folder, chunks, n=64, grids=((8, 32), (4, 52))):
    from xloc.data.corpus import ChannelCorpus, write_chunk

    rng = np.random.default_rng(len(chunks) if isinstance(chunks, list) else chunks)
    infos = []
    for i in range(chunks):
        m, k = grids[i % len(grids)]
        csi = (rng.normal(size=(n, m, k)) + 1j * rng.normal(size=(n, m, k))).astype(np.complex64)
        infos.append(write_chunk(folder, f"chunk-{i:06d}.h5", csi, None, source="test"))
    ChannelCorpus.write_manifest(folder, infos)
    return ChannelCorpus.open(folder, buffer_chunks=2)


def test_pretraining_streams_a_corpus_larger_than_its_memory_with_flat_memory(tmp_path):
    import tracemalloc

    peaks = {}
    for chunks in (8, 32):
        corpus = _disk_corpus(tmp_path / str(chunks), chunks, n=256)
        tracemalloc.start()
        LWLM(seed=0, **{**STREAM, "epochs": 1, "batch_size": 256, "objectives": ("sf-mcm",)}).pretrain(corpus)
        peaks[chunks] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if chunks == 32:
            assert peaks[chunks] < corpus.nbytes / 3  # the corpus (15 MB) never sits in memory
    assert peaks[32] < 1.3 * peaks[8]  # four times the corpus, the same memory


def test_an_interrupted_pretraining_resumes_to_the_same_weights(tmp_path):
    import os
    import signal

    corpus = _disk_corpus(tmp_path / "corpus", 6)
    whole = LWLM(seed=3, **STREAM).pretrain(corpus)

    def ctrl_c(step, _losses):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # held back to the step boundary, then the run stops

    stopped = LWLM(seed=3, **STREAM).pretrain(corpus, on_step=ctrl_c, checkpoint_dir=tmp_path / "ckpt",
                                                checkpoint_every=2)
    assert stopped.pretrain_steps_ == 5 < whole.pretrain_steps_
    resumed = LWLM(seed=3, **STREAM).pretrain(corpus, checkpoint_dir=tmp_path / "ckpt", resume=True)
    assert resumed.pretrain_steps_ == whole.pretrain_steps_
    for (name, a), b in zip(whole.encoder_.state_dict().items(), resumed.encoder_.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.pretrain_losses_ == whole.pretrain_losses_
    with pytest.raises(DataValidationError, match="other settings \\(lr\\)"):
        LWLM(seed=3, **{**STREAM, "lr": 0.01}).pretrain(corpus, checkpoint_dir=tmp_path / "ckpt", resume=True)
    with pytest.raises(DataValidationError, match="another corpus"):
        LWLM(seed=3, **STREAM).pretrain(_disk_corpus(tmp_path / "other", 4), checkpoint_dir=tmp_path / "ckpt",
                                        resume=True)


def test_one_checkpoint_finetunes_on_two_radio_configurations(tmp_path):
    from xloc.sim.corpus import build_corpus, random_street
    from xloc.sim.scenarios import ScenarioEnvironment, simulate_outdoor

    corpus = build_corpus(tmp_path / "corpus", 600, chunk_channels=150)
    model = LWLM(seed=0, **STREAM).pretrain(corpus)
    checkpoint = LWLM.load(model.save(tmp_path / "lwlm"))
    for grid in ((8, 32), (4, 52)):  # the twins' BSs and the office's APs
        street = random_street(np.random.default_rng([5, grid[1]]), grid=grid)
        env = ScenarioEnvironment(f"street-{grid}", street.scene, street.user_area_m)
        pool, test = (simulate_outdoor(env, n, np.random.default_rng([grid[1], n]), preset="test", seed=0)
                      for n in (200, 80))
        tuned = copy.deepcopy(checkpoint).finetune("toa", pool)
        truth = task_samples(test, "toa")[1]
        err = task_errors("toa", lx._lwlm_answers(tuned, test, "toa"), truth)
        mean_answer = task_errors("toa", np.full_like(truth, task_samples(pool, "toa")[1].mean()), truth)
        assert np.nanmean(err) < 0.8 * np.nanmean(mean_answer), grid  # beats the pool's mean ToA
        with pytest.raises(DataValidationError, match="fine-tuned on"):
            tuned.predict(np.zeros((1, 1, 4, 32), np.complex64) + 1, "toa")


def test_random_masks_hide_the_ratio_and_keep_a_patch_visible():
    from xloc.learn.lwlm import random_masks

    masks = random_masks(300, (2, 8), 0.4, np.random.default_rng(0))
    assert masks.shape == (300, 16) and (masks.sum(1) == 6).all()
    assert 0.3 < masks.mean(0).min() and masks.mean(0).max() < 0.5  # every patch is masked about as often
    assert not random_masks(5, (1, 2), 0.75, np.random.default_rng(0)).all(1).any()
    with pytest.raises(DataValidationError, match="masks must be one of"):
        LWLM(masks="stripes")
