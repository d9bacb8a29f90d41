"""LWLM: a self-supervised channel foundation model with ToA, AoA, single-BS and multi-BS decoders.

``LWLM(...).pretrain(unlabelled)`` learns a :class:`~xloc.models.lwlm.ChannelEncoder` from channels alone (no
location labels) by minimising the sum of the switchable objectives

* ``"sf-mcm"`` spatial-frequency masked channel modelling: blocks of patches along antennas and/or
  subcarriers are replaced by the mask token and reconstructed; the loss is the MSE over masked patches only,
  ``L_MCM = 1/|M| sum_{i in M} ||P_hat_i - P_i||^2``;
* ``"dti"`` domain-transformation invariance: the representation of a channel agrees with that of its angle-delay
  or delay-domain transform (:mod:`xloc.features.domains`), ``L_DTI = 1/2 [D(q(z), sg(z_T)) + D(q(z_T), sg(z))]``
  with ``D`` the negative cosine, a predictor ``q`` and stop-gradient ``sg`` (SimSiam form; our choice -- the
  paper names the objective, not its estimator);
* ``"picl"`` position-invariant contrastive learning: two views of the channel at the same position (another
  condition of the scene when given -- e.g. other vehicles -- plus noise, common phase and gain draws) are
  positives, every other channel of the batch a negative,
  ``L_PICL = -1/N sum_i log exp(s(z_i, z'_i)/tau) / sum_j exp(s(z_i, z'_j)/tau)`` (InfoNCE, both directions).

``finetune(task, data, label_fraction)`` then trains a light decoder (and the encoder) on a fraction of the
labelled users; ``predict(csi, task)`` answers in the task's unit (ToA [s], AoA [rad], positions [m]). A model
that was never pretrained fine-tunes from random weights: the "no pretraining" baseline, same encoder and heads.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xloc.data.corpus import ChannelCorpus
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.features.domains import DOMAINS, to_domain
from xloc.learn import distributed
from xloc.learn.channel_tasks import labelled_users, task_samples
from xloc.learn.checkpoint import load_model_folder, save_model_folder
from xloc.models.lwlm import ChannelEncoder, ChannelHead, MultiBSHead, PatchReconstruction, ProjectionHead
from xloc.progress import deferred_interrupt, note_interrupt
from xloc.progress import progress as progress_bar

__all__ = ["LWLM", "LWLMConfig", "OBJECTIVES", "MASKS", "block_masks", "random_masks", "sf_mcm_masks",
           "masked_reconstruction_loss", "info_nce", "negative_cosine", "channel_tensors"]

OBJECTIVES = ("sf-mcm", "dti", "picl")
#: SF-MCM's mask shapes: bands and rectangles of patches (:func:`block_masks`) or single patches (:func:`random_masks`)
MASKS = ("block", "random")
PROJECTION_DIMS = 64
StepCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class LWLMConfig:
    """Encoder size, pretraining objectives and schedule, fine-tuning schedule.

    ``mask_ratio``: fraction of patches SF-MCM masks, ``masks`` their shape (:data:`MASKS`); ``reconstruct=False``
    keeps SF-MCM's masks on the encoder's inputs but drops its reconstruction loss (masking as an augmentation of the
    other objectives' views only: the ablation that tells the two effects of SF-MCM apart); ``temperature``:
    InfoNCE's tau; ``snr_db``: range of the AWGN drawn for each PICL view [dB]; ``gain_db``: +/- range of its gain
    draw [dB].
    """

    patch: tuple[int, int] = (4, 4)
    d_model: int = 64
    depth: int = 4
    heads: int = 4
    d_ff: int = 128
    objectives: tuple[str, ...] = OBJECTIVES
    mask_ratio: float = 0.4
    masks: str = "block"
    reconstruct: bool = True
    temperature: float = 0.1
    snr_db: tuple[float, float] = (10.0, 30.0)
    gain_db: float = 2.0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    finetune_steps: int = 300
    finetune_batch: int = 64
    finetune_lr: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.objectives) - set(OBJECTIVES)
        if unknown:
            raise DataValidationError(f"unknown objectives {sorted(unknown)}; choose from {OBJECTIVES}")
        if self.masks not in MASKS:
            raise DataValidationError(f"masks must be one of {MASKS}, got {self.masks!r}")
        if not self.reconstruct and ("sf-mcm" not in self.objectives or len(self.objectives) < 2):
            raise DataValidationError("reconstruct=False keeps SF-MCM's masks without its loss: it needs 'sf-mcm' "
                                      f"and another objective to train, got objectives {self.objectives}")
        if not 0 < self.mask_ratio <= 0.75:
            raise DataValidationError(f"mask_ratio must be in (0, 0.75], got {self.mask_ratio}")
        if self.temperature <= 0 or self.lr <= 0 or self.finetune_lr <= 0:
            raise DataValidationError("temperature, lr and finetune_lr must be > 0")
        if min(self.epochs, self.finetune_steps) < 0 or min(self.batch_size, self.finetune_batch) < 2:
            raise DataValidationError("epochs, finetune_steps >= 0 and batch sizes >= 2 required")
        if self.d_model % self.heads:
            raise DataValidationError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")


def block_masks(n: int, grid: tuple[int, int], ratio: float, rng: np.random.Generator) -> np.ndarray:
    """SF-MCM masks ``(n, ga * gk)`` bool over a ``ga x gk`` patch grid: each sample gets random blocks -- a band
    of antenna rows, a band of subcarrier columns, or a rectangle -- until at least ``ratio`` is covered."""
    ga, gk = grid
    masks = np.zeros((n, ga, gk), dtype=bool)
    for m in masks:
        while m.mean() < ratio:
            kind = rng.integers(3)
            if kind == 0:  # antenna band across half the subcarriers or more
                h, w = rng.integers(1, max(1, ga // 4) + 1), rng.integers(max(1, gk // 2), gk + 1)
            elif kind == 1:  # subcarrier band across half the antennas or more
                h, w = rng.integers(max(1, ga // 2), ga + 1), rng.integers(1, max(1, gk // 4) + 1)
            else:
                h, w = rng.integers(1, max(1, ga // 2) + 1), rng.integers(1, max(1, gk // 2) + 1)
            a, k = rng.integers(0, ga - h + 1), rng.integers(0, gk - w + 1)
            m[a : a + h, k : k + w] = True
        if m.all():  # keep something visible to reconstruct from
            m[rng.integers(ga), rng.integers(gk)] = False
    return masks.reshape(n, ga * gk)


def random_masks(n: int, grid: tuple[int, int], ratio: float, rng: np.random.Generator) -> np.ndarray:
    """SF-MCM masks ``(n, ga * gk)`` bool of ``round(ratio * ga * gk)`` patches drawn uniformly (at least one
    masked, at least one visible)."""
    cells = grid[0] * grid[1]
    count = min(max(1, round(ratio * cells)), cells - 1)
    return rng.random((n, cells)).argsort(axis=1) < count


def sf_mcm_masks(kind: str, n: int, grid: tuple[int, int], ratio: float, rng: np.random.Generator) -> np.ndarray:
    """The masks of ``kind`` (:data:`MASKS`)."""
    return {"block": block_masks, "random": random_masks}[kind](n, grid, ratio, rng)


def masked_reconstruction_loss(predicted: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor,
                               total: int | None = None) -> torch.Tensor:
    """MSE over the masked patches only: ``predicted``, ``patches`` ``(N, T, P)``, ``mask`` ``(N, T)`` bool.
    ``total`` divides instead of the mask count (a rank's share of a batch whose mask count is ``total``)."""
    err = ((predicted - patches) ** 2).mean(-1)
    return (err * mask).sum() / (mask.sum().clamp(min=1) if total is None else max(total, 1))


def info_nce(z: torch.Tensor, z_pos: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row ``i`` of ``z`` and of ``z_pos`` are positives, other rows negatives (cosine / tau)."""
    a, b = F.normalize(z, dim=-1), F.normalize(z_pos, dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(len(z), device=z.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``-cos(p, sg(z))`` averaged over rows (SimSiam's D)."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def channel_tensors(csi: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex channels ``(n, M, K)`` -> (unit-RMS complex64 tensor, mean power [dB] ``(n,)``)."""
    h = np.asarray(csi)
    if h.ndim != 3 or not np.iscomplexobj(h):
        raise DataValidationError(f"channels must be complex (n, antennas, subcarriers), got {h.dtype} {h.shape}")
    if not np.isfinite(h).all():
        raise DataValidationError("channels hold NaN or infinite values")
    power = (np.abs(h) ** 2).mean(axis=(1, 2))
    scale = np.sqrt(np.maximum(power, 1e-30))
    return (torch.from_numpy((h / scale[:, None, None]).astype(np.complex64)),
            torch.from_numpy(10 * np.log10(np.maximum(power, 1e-30)).astype(np.float32)))


def _real(h: torch.Tensor) -> torch.Tensor:
    return torch.stack([h.real, h.imag], dim=1)


def _renormalise(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    power = (h.abs() ** 2).mean(dim=(-2, -1)).clamp(min=1e-12)
    return h / power.sqrt()[:, None, None], 10 * torch.log10(power)


@dataclass
class _Task:
    """A fine-tuned decoder: its encoder copy, head, target standardisation and provenance."""

    name: str
    encoder: ChannelEncoder
    head: nn.Module
    centre: np.ndarray
    scale: np.ndarray
    bs: int
    n_bs: int
    n_labelled_users: int
    steps: int
    seconds: float
    grid: tuple[int, int]  # the antennas x subcarriers the decoder was fine-tuned on
    losses: list[float] = field(default_factory=list)


@dataclass
class _PretrainRun:
    """Where a pretraining run stands: what a checkpoint stores beside the weights and the optimiser."""

    rng: np.random.Generator
    gen: torch.Generator
    epoch: int = 1
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    losses: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _corpus_of(unlabelled: Fingerprints | FingerprintSet, views: Fingerprints | FingerprintSet | None
               ) -> ChannelCorpus:
    """Fingerprints as an in-memory corpus: one chunk per environment (every BS of every user a channel), all
    chunks in one buffer so batches mix environments."""
    base = [unlabelled] if isinstance(unlabelled, Fingerprints) else list(unlabelled.values())
    if not base:
        raise DataValidationError("pretraining needs at least one environment of channels")
    other = base if views is None else ([views] if isinstance(views, Fingerprints) else list(views.values()))
    if len(other) != len(base):
        raise DataValidationError(f"views hold {len(other)} environments, unlabelled {len(base)}")
    arrays: list[tuple[np.ndarray, np.ndarray | None]] = []
    for fp, fv in zip(base, other, strict=True):
        x = fp.measurements
        if x.ndim != 4 or not np.iscomplexobj(x):
            raise DataValidationError(f"environment {fp.name!r}: CSI must be complex (n, bs, antennas, subcarriers), "
                                      f"got {x.dtype} {x.shape}")
        if fv is not fp and (fv.measurements.shape != x.shape or not np.array_equal(fv.point_ids, fp.point_ids)):
            raise DataValidationError(f"views of {fp.name!r} ({fv.name!r}) must hold the same users "
                                      f"(point_ids) with the same CSI shape {x.shape}")
        flat = x.reshape(-1, *x.shape[2:])
        arrays.append((flat, None if fv is fp else fv.measurements.reshape(-1, *x.shape[2:])))
    return ChannelCorpus.from_arrays(arrays, [fp.name for fp in base], buffer_chunks=len(arrays))


def _corpus_key(corpus: ChannelCorpus) -> dict[str, Any]:
    """What identifies a corpus to a checkpoint (a resume on other data is refused)."""
    return {"chunks": len(corpus.chunks), "channels": len(corpus),
            "grids": [list(g) for g in corpus.grids], "power_mean_db": round(corpus.power_stats()[0], 6)}


class LWLM:
    """Large Wireless Localization Model (CPU-sized): ``pretrain`` unlabelled, ``finetune`` per task, ``predict``."""

    encoder_: ChannelEncoder
    power_stats_: tuple[float, float]
    pretrain_losses_: list[dict[str, float]]
    pretrain_curve_: list[dict[str, float]]
    pretrain_s_: float

    def __init__(self, **hyper: Any) -> None:
        self.config = LWLMConfig(**hyper)
        self.tasks_: dict[str, _Task] = {}
        self.grids_: list[tuple[int, int]] = []  # the channel grids pretraining read
        self.pretrained_ = False

    # --- building blocks -------------------------------------------------------------------------------------
    def _new_encoder(self) -> ChannelEncoder:
        c = self.config
        torch.manual_seed(c.seed)
        return ChannelEncoder(c.patch, d_model=c.d_model, depth=c.depth, heads=c.heads, d_ff=c.d_ff)

    def _power(self, power_db: torch.Tensor) -> torch.Tensor:
        mean, std = self.power_stats_
        return (power_db - mean) / std

    def _check_grid(self, csi: np.ndarray, where: str) -> None:
        if csi.ndim != 4 or not np.iscomplexobj(csi):
            raise DataValidationError(f"{where}: CSI must be complex (n, bs, antennas, subcarriers), got "
                                      f"{csi.dtype} {csi.shape}")
        pa, pk = self.config.patch
        if csi.shape[2] % pa or csi.shape[3] % pk:
            raise DataValidationError(f"{where}: channels are {csi.shape[2]} antennas x {csi.shape[3]} subcarriers; "
                                      f"the patch {pa} x {pk} must divide them")

    # --- pretraining -----------------------------------------------------------------------------------------
    def pretrain(self, unlabelled: Fingerprints | FingerprintSet | ChannelCorpus,
                 views: Fingerprints | FingerprintSet | None = None, *,
                 callback: Callable[[int, dict[str, float]], None] | None = None,
                 on_step: Callable[[int, dict[str, float]], None] | None = None, progress: bool = False,
                 checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0, resume: bool = False) -> LWLM:
        """Self-supervised pretraining on unlabelled channels (positions are never read).

        ``unlabelled``: fingerprints (every BS of every user is a sample) or a :class:`ChannelCorpus` streamed from
        disk, whose memory stays at ``buffer_chunks`` chunks whatever its size; grids of several sizes are
        batched separately through the one encoder. ``views``: with fingerprints, the same users (same
        ``point_ids``, same environment order) under other conditions; channel ``(user, BS)`` there is PICL's
        positive for ``(user, BS)`` here (a corpus carries its own views). Without a view the positive is another
        noise/phase/gain draw of the same channel.

        ``checkpoint_dir``: the whole training state (weights, optimiser, schedule, random generators, position
        in the corpus, curves) is written there every ``checkpoint_every`` steps, at the end, and when a Ctrl-C
        stops the run on a step boundary; ``resume=True`` continues from it and reaches the same weights as a run
        that never stopped. ``callback(epoch, losses)`` runs after every epoch, ``on_step(step, losses)`` after
        every step.
        """
        c = self.config
        if not c.objectives:
            raise DataValidationError("pretraining needs at least one objective")
        if checkpoint_every < 0:
            raise DataValidationError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
        if resume and checkpoint_dir is None:
            raise DataValidationError("resume needs checkpoint_dir")
        corpus = unlabelled if isinstance(unlabelled, ChannelCorpus) else _corpus_of(unlabelled, views)
        if views is not None and isinstance(unlabelled, ChannelCorpus):
            raise DataValidationError("a corpus carries its own views; pass views only with fingerprints")
        for grid in corpus.grids:
            self._check_grid(np.zeros((1, 1, *grid), np.complex64), f"corpus grid {grid[0]} x {grid[1]}")
        self.grids_ = list(corpus.grids)
        mean, std = corpus.power_stats()
        self.power_stats_ = (mean, std + 1e-6)
        heads, params, opt = self._pretraining_state()
        per_epoch = [corpus.steps(c.batch_size, e, c.seed) for e in range(1, c.epochs + 1)]
        total = sum(per_epoch)
        if c.epochs and total == 0:
            raise DataValidationError(f"the corpus has fewer channels per grid than batch_size {c.batch_size} "
                                      f"({len(corpus)} channels over grids {corpus.grids})")
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, c.lr, total_steps=max(1, total), pct_start=0.1)
        run = _PretrainRun(rng=np.random.default_rng([c.seed, 41]), gen=torch.Generator().manual_seed(c.seed))
        key = _corpus_key(corpus)
        if resume and checkpoint_dir is not None and (Path(checkpoint_dir) / "meta.json").is_file():
            run = self._restore_checkpoint(Path(checkpoint_dir), heads, opt, sched, key)
        self.pretrain_losses_, self.pretrain_curve_ = run.losses, run.curve
        log_every = max(1, total // 200)
        window: dict[str, float] = {}
        t0 = time.perf_counter() - run.seconds
        enc = self.encoder_
        enc.train()
        stopped = False

        def save() -> None:
            if checkpoint_dir is not None and distributed.is_main():
                run.seconds = time.perf_counter() - t0
                self._write_checkpoint(Path(checkpoint_dir), heads, opt, sched, run, key)

        with progress_bar("pretraining LWLM", total, enabled=progress, start=run.step) as bar, \
                deferred_interrupt() as interrupt:
            for epoch in range(run.epoch, c.epochs + 1):
                skip = run.step - sum(per_epoch[: epoch - 1])
                for csi, view in corpus.batches(c.batch_size, epoch, c.seed, start=skip):
                    h, power = channel_tensors(csi)
                    h_view, power_view = channel_tensors(view)
                    parts, diagnostics = self._pretrain_update(h, power, h_view, power_view, heads, params, opt,
                                                               run.rng, run.gen)
                    sched.step()
                    values = {k: distributed.sum_scalar(v) for k, v in parts.items()} | diagnostics
                    for k, v in values.items():
                        run.sums[k] = run.sums.get(k, 0.0) + v / per_epoch[epoch - 1]
                        window[k] = window.get(k, 0.0) + v
                    run.step += 1
                    if run.step % log_every == 0 or run.step == total:
                        n = run.step % log_every or log_every
                        run.curve.append({"step": run.step, "epoch": epoch, **{k: v / n for k, v in window.items()}})
                        window = {}
                    bar.advance(1, epoch=epoch, **{k: f"{v:.3f}" for k, v in values.items() if k in parts})
                    if on_step is not None:
                        on_step(run.step, values)
                    if checkpoint_every and run.step % checkpoint_every == 0 and run.step < total:
                        save()
                    if interrupt.requested:
                        stopped = True
                        break
                if stopped:
                    break
                run.losses.append(run.sums)
                run.sums, run.epoch = {}, epoch + 1
                if callback is not None:
                    callback(epoch, run.losses[-1])
            if stopped:
                note_interrupt("LWLM pretraining", run.step, total)
                if progress:
                    print(f"interrupted after {run.step} of {total} steps"
                          + (f"; resume from {checkpoint_dir}" if checkpoint_dir is not None else ""))
        enc.eval()
        self.pretrain_s_ = time.perf_counter() - t0
        self.pretrain_steps_ = run.step
        self.pretrained_ = True
        save()
        return self

    def _pretraining_state(self) -> tuple[nn.ModuleDict, list[nn.Parameter], torch.optim.Optimizer]:
        """A fresh encoder (``encoder_``), the pretraining heads, their parameters and the optimiser."""
        c = self.config
        self.encoder_ = self._new_encoder()
        heads = nn.ModuleDict({"recon": PatchReconstruction(c.d_model, self.encoder_.patch_dim),
                               "picl": ProjectionHead(c.d_model, PROJECTION_DIMS),
                               "dti": ProjectionHead(c.d_model, PROJECTION_DIMS),
                               "dti_pred": nn.Sequential(nn.Linear(PROJECTION_DIMS, PROJECTION_DIMS), nn.GELU(),
                                                         nn.Linear(PROJECTION_DIMS, PROJECTION_DIMS))})
        params = list(self.encoder_.parameters()) + list(heads.parameters())
        return heads, params, torch.optim.AdamW(params, lr=c.lr, weight_decay=1e-4)

    def _write_checkpoint(self, folder: Path, heads: nn.ModuleDict, opt: torch.optim.Optimizer,
                          sched: torch.optim.lr_scheduler.LRScheduler, run: _PretrainRun, key: dict[str, Any]) -> None:
        tensors = {f"encoder.{k}": v for k, v in self.encoder_.state_dict().items()}
        tensors |= {f"heads.{k}": v for k, v in heads.state_dict().items()}
        opt_state = opt.state_dict()
        for i, state in opt_state["state"].items():
            tensors |= {f"opt.{i}.{k}": torch.as_tensor(v) for k, v in state.items()}
        tensors["torch_generator"] = run.gen.get_state()
        meta = {"kind": "lwlm-pretraining", "config": asdict(self.config), "corpus": key,
                "power_stats": list(self.power_stats_), "grids": [list(g) for g in self.grids_],
                "epoch": run.epoch, "step": run.step, "sums": run.sums, "losses": run.losses, "curve": run.curve,
                "seconds": run.seconds, "numpy_generator": run.rng.bit_generator.state,
                "optimizer_groups": opt_state["param_groups"], "scheduler": sched.state_dict()}
        save_model_folder(folder, tensors, meta)

    def _restore_checkpoint(self, folder: Path, heads: nn.ModuleDict, opt: torch.optim.Optimizer,
                            sched: torch.optim.lr_scheduler.LRScheduler, key: dict[str, Any]) -> _PretrainRun:
        tensors, meta = load_model_folder(folder, kind="lwlm-pretraining")
        changed = sorted(k for k, v in asdict(self.config).items()
                         if json.loads(json.dumps(v)) != meta["config"].get(k))
        if changed:
            raise DataValidationError(f"{folder}: the checkpoint was written with other settings ({', '.join(changed)}"
                                      "); resume with the same ones or start a new checkpoint folder")
        if meta["corpus"] != key:
            raise DataValidationError(f"{folder}: the checkpoint was written for another corpus ({meta['corpus']}, "
                                      f"this one {key})")

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.encoder_.load_state_dict(part("encoder."))
        heads.load_state_dict(part("heads."))
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in part("opt.").items():
            i, name = k.split(".", 1)
            state.setdefault(int(i), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
        sched.load_state_dict(meta["scheduler"])
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["numpy_generator"]
        gen = torch.Generator()
        gen.set_state(tensors["torch_generator"])
        return _PretrainRun(rng=rng, gen=gen, epoch=int(meta["epoch"]), step=int(meta["step"]), sums=meta["sums"],
                            losses=meta["losses"], curve=meta["curve"], seconds=float(meta["seconds"]))

    def _pretrain_update(self, h: torch.Tensor, power: torch.Tensor, h_view: torch.Tensor, power_view: torch.Tensor,
                         heads: nn.ModuleDict, params: list[nn.Parameter], opt: torch.optim.Optimizer,
                         rng: np.random.Generator, gen: torch.Generator
                         ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """One optimiser step on the sum of the objectives; returns the separate losses and the diagnostics."""
        parts, diagnostics = self._pretrain_losses(h, power, h_view, power_view, heads, rng, gen)
        loss = sum(parts.values(), torch.zeros(()))
        opt.zero_grad()
        loss.backward()
        distributed.sum_module_gradients(params, 1.0)  # partial losses: the whole batch's gradient is their sum
        nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return parts, diagnostics

    def pretraining_step_for_profiling(self, channels: torch.Tensor) -> Callable[[], None]:
        """A closure running one pretraining step on unit-power complex ``channels`` ``(n, M, K)`` (for FLOP and
        time measurements; the model it trains is throw-away)."""
        self.power_stats_ = (0.0, 1.0)
        heads, params, opt = self._pretraining_state()
        power = torch.zeros(len(channels))
        rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)

        def step() -> None:
            self._pretrain_update(channels, power, channels, power, heads, params, opt, rng, gen)

        return step

    def _augment(self, h: torch.Tensor, power_db: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        """A nuisance draw of unit-RMS channels: common phase, gain, AWGN at an SNR in ``config.snr_db``."""
        c = self.config
        n = len(h)
        phase = torch.rand(n, generator=gen) * 2 * torch.pi
        lo, hi = c.snr_db
        snr = lo + (hi - lo) * torch.rand(n, generator=gen)
        sigma = torch.sqrt(10 ** (-snr / 10) / 2)[:, None, None]
        noise = torch.complex(torch.randn(h.shape, generator=gen), torch.randn(h.shape, generator=gen)) * sigma
        rotated = h * torch.polar(torch.ones(n), phase)[:, None, None] + noise
        out, rms_db = _renormalise(rotated)
        gain = (2 * torch.rand(n, generator=gen) - 1) * c.gain_db
        return out, power_db + gain + rms_db

    def _pretrain_losses(self, h: torch.Tensor, power: torch.Tensor, h_view: torch.Tensor, power_view: torch.Tensor,
                         heads: nn.ModuleDict, rng: np.random.Generator,
                         gen: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """The objectives on a batch, and the diagnostic ``sf-mcm-mean``: the masked-patch MSE of predicting every
        patch by the batch's mean patch at its grid position (the level SF-MCM must beat).

        Random draws (augmentations, masks, domain) are made for the whole batch on
        every rank; under data parallelism each rank encodes its share and returns partial losses that sum over
        ranks to the whole batch's losses (PICL compares against every rank's embeddings)."""
        c, enc = self.config, self.encoder_
        obj = set(c.objectives)
        mine, weight = distributed.share(len(h))
        n_ranks = distributed.world()[1]
        h1, p1 = self._augment(h, power, gen)
        x1 = _real(h1)
        losses: dict[str, torch.Tensor] = {}
        grid = enc.grid_of(h.shape[1], h.shape[2])
        diagnostics: dict[str, float] = {}
        mask1 = (torch.from_numpy(sf_mcm_masks(c.masks, len(h), grid, c.mask_ratio, rng)) if "sf-mcm" in obj
                 else None)
        t1 = enc(x1[mine], self._power(p1[mine]), 0, None if mask1 is None else mask1[mine])
        if mask1 is not None and c.reconstruct:
            patches = enc.patchify(x1)
            losses["sf-mcm"] = masked_reconstruction_loss(heads["recon"](t1), patches[mine], mask1[mine],
                                                          total=int(mask1.sum()))
            with torch.no_grad():
                diagnostics["sf-mcm-mean"] = float(masked_reconstruction_loss(
                    patches.mean(0, keepdim=True).expand_as(patches), patches, mask1))
        if "picl" in obj:
            h2, p2 = self._augment(h_view, power_view, gen)
            x2 = _real(h2)
            mask2 = (torch.from_numpy(sf_mcm_masks(c.masks, len(h), grid, c.mask_ratio, rng)) if mask1 is not None
                     else None)
            t2 = enc(x2[mine], self._power(p2[mine]), 0, None if mask2 is None else mask2[mine])
            if mask2 is not None and c.reconstruct:
                losses["sf-mcm"] = 0.5 * (losses["sf-mcm"] + masked_reconstruction_loss(
                    heads["recon"](t2), enc.patchify(x2[mine]), mask2[mine], total=int(mask2.sum())))
            z1, z2 = distributed.gather_rows(heads["picl"](t1)), distributed.gather_rows(heads["picl"](t2))
            losses["picl"] = info_nce(z1, z2, c.temperature) / n_ranks
        if "dti" in obj:
            d = int(rng.integers(1, len(DOMAINS)))  # angle-delay or delay
            tt = enc(_real(to_domain(h1[mine], DOMAINS[d])), self._power(p1[mine]), d)
            z, zt = heads["dti"](t1), heads["dti"](tt)
            q = heads["dti_pred"]
            losses["dti"] = weight * 0.5 * (negative_cosine(q(z), zt) + negative_cosine(q(zt), z))
        return losses, diagnostics

    # --- fine-tuning -----------------------------------------------------------------------------------------
    def finetune(self, task: str, data: Fingerprints, label_fraction: float = 1.0, *, bs: int = 0,
                 steps: int | None = None, seed: int | None = None, callback: StepCallback | None = None) -> LWLM:
        """Train ``task``'s decoder and a copy of the encoder on ``label_fraction`` of ``data``'s users.

        ``bs`` picks the base station of ``"single-bs"``; ``steps`` defaults to ``config.finetune_steps``
        (Adam steps of ``config.finetune_batch`` samples); ``callback(step, loss)`` runs after every step.
        """
        c = self.config
        self._check_grid(data.measurements, f"environment {data.name!r}")
        seed = c.seed if seed is None else seed
        users = labelled_users(len(data), label_fraction, np.random.default_rng([seed, 31]))
        csi, targets = task_samples(data, task, bs, users)
        if len(targets) < 2:
            raise DataValidationError(f"task {task!r}: {len(targets)} labelled sample(s) in {data.name!r} at "
                                      f"label_fraction {label_fraction}; need at least 2")
        grid = (int(data.measurements.shape[2]), int(data.measurements.shape[3]))
        if not self.pretrained_:  # from scratch: standardise power on this data's channels (no labels involved)
            _, p_all = channel_tensors(data.measurements.reshape(-1, *grid))
            self.power_stats_ = (float(p_all.mean()), float(p_all.std()) + 1e-6)
            encoder = self._new_encoder()
        else:
            encoder = copy.deepcopy(self.encoder_)
        torch.manual_seed(seed)
        n_bs = csi.shape[1]
        head: nn.Module = (MultiBSHead(c.d_model, n_bs) if task == "multi-bs"
                           else ChannelHead(c.d_model, targets.shape[1]))
        centre, scale = targets.mean(0), targets.std(0) + 1e-6
        if task in ("single-bs", "multi-bs"):
            scale = np.full_like(scale, scale.mean())  # one scale for x and y keeps the loss isotropic in metres
        h, power = channel_tensors(csi.reshape(-1, *csi.shape[2:]))
        h = h.reshape(len(csi), n_bs, *csi.shape[2:])
        power = power.reshape(len(csi), n_bs)
        y = torch.from_numpy(((targets - centre) / scale).astype(np.float32))
        params = list(encoder.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=c.finetune_lr, weight_decay=1e-4)
        total = c.finetune_steps if steps is None else steps
        rng = np.random.default_rng([seed, 32])
        record = _Task(task, encoder, head, centre, scale, bs, n_bs, len(users), total, 0.0, grid)
        t0 = time.perf_counter()
        encoder.train()
        for step in range(1, total + 1):
            b = torch.from_numpy(rng.choice(len(y), size=min(c.finetune_batch, len(y)), replace=False))
            out = self._decode(record, h[b], power[b])
            loss = ((out - y[b]) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            record.losses.append(loss.item())
            if callback is not None:
                callback(step, record.losses[-1])
        encoder.eval()
        record.seconds = time.perf_counter() - t0
        self.tasks_[task] = record
        return self

    def _decode(self, task: _Task, h: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
        """Standardised outputs for channels ``h`` ``(n, b, M, K)`` with powers ``(n, b)`` [dB]."""
        n, b = h.shape[:2]
        tokens = task.encoder(_real(h.reshape(n * b, *h.shape[2:])), self._power(power.reshape(-1)))
        return task.head(tokens)

    def predict(self, csi: np.ndarray, task: str | None = None, chunk: int = 256) -> np.ndarray:
        """Answers for complex CSI ``(n, bs, antennas, subcarriers)``: ``"toa"`` delays [s] and ``"aoa"`` azimuths
        [rad] ``(n, bs)`` (one per BS), ``"single-bs"``/``"multi-bs"`` positions ``(n, 2)`` [m]. ``task``
        defaults to the only fine-tuned one."""
        if not self.tasks_:
            raise NotFittedError("LWLM has no fine-tuned task: call finetune(task, data) first")
        if task is None:
            if len(self.tasks_) > 1:
                raise DataValidationError(f"several tasks are fine-tuned {sorted(self.tasks_)}; name one")
            task = next(iter(self.tasks_))
        if task not in self.tasks_:
            raise DataValidationError(f"task {task!r} is not fine-tuned; fine-tuned: {sorted(self.tasks_)}")
        rec = self.tasks_[task]
        csi = np.asarray(csi)
        self._check_grid(csi, "predict")
        if tuple(csi.shape[2:]) != rec.grid:
            raise DataValidationError(f"predict: channels are {csi.shape[2]} antennas x {csi.shape[3]} subcarriers; "
                                      f"the {task} decoder was fine-tuned on {rec.grid[0]} x {rec.grid[1]} (fine-tune "
                                      "the pretrained encoder on this configuration)")
        n_users, n_bs = csi.shape[:2]
        if task == "multi-bs" and csi.shape[1] != rec.n_bs:
            raise DataValidationError(f"multi-bs decoder was fine-tuned on {rec.n_bs} base stations, got "
                                      f"{csi.shape[1]}")
        if task == "single-bs":
            if rec.bs >= csi.shape[1]:
                raise DataValidationError(f"single-bs decoder reads BS index {rec.bs}; CSI has {csi.shape[1]} BSs")
            csi = csi[:, rec.bs : rec.bs + 1]
        elif task in ("toa", "aoa"):
            csi = csi.reshape(-1, 1, *csi.shape[2:])
        out = []
        with torch.no_grad():
            for s in range(0, len(csi), chunk):
                part = csi[s : s + chunk]
                h, power = channel_tensors(part.reshape(-1, *part.shape[2:]))
                out.append(self._decode(rec, h.reshape(*part.shape), power.reshape(part.shape[:2])).numpy())
        y = rec.centre + rec.scale * np.concatenate(out).astype(np.float64)
        if task == "toa":
            return (y[:, 0] * 1e-9).reshape(n_users, n_bs)
        if task == "aoa":
            return np.radians(y[:, 0]).reshape(n_users, n_bs)
        return y

    # --- persistence -----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Encoder and fine-tuned decoders as safetensors + JSON (config, power statistics, task metadata,
        pretraining curves)."""
        if not self.pretrained_ and not self.tasks_:
            raise NotFittedError("nothing to save: pretrain or fine-tune first")
        tensors: dict[str, torch.Tensor] = {}
        if self.pretrained_:
            tensors.update({f"encoder.{k}": v for k, v in self.encoder_.state_dict().items()})
        tasks_meta = {}
        for name, rec in self.tasks_.items():
            tensors.update({f"task.{name}.encoder.{k}": v for k, v in rec.encoder.state_dict().items()})
            tensors.update({f"task.{name}.head.{k}": v for k, v in rec.head.state_dict().items()})
            tasks_meta[name] = {"centre": rec.centre.tolist(), "scale": rec.scale.tolist(), "bs": rec.bs,
                                "n_bs": rec.n_bs, "n_labelled_users": rec.n_labelled_users, "steps": rec.steps,
                                "seconds": rec.seconds, "out_dims": int(len(rec.centre)), "grid": list(rec.grid)}
        meta = {"kind": "lwlm", "config": asdict(self.config), "grids": [list(g) for g in self.grids_],
                "power_stats": list(self.power_stats_), "pretrained": self.pretrained_, "tasks": tasks_meta,
                "pretrain_losses": getattr(self, "pretrain_losses_", []),
                "pretrain_curve": getattr(self, "pretrain_curve_", []),
                "pretrain_s": getattr(self, "pretrain_s_", 0.0), "pretrain_steps": getattr(self, "pretrain_steps_", 0)}
        return save_model_folder(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> LWLM:
        """Read a folder written by :meth:`save` (safetensors: no pickle)."""
        tensors, meta = load_model_folder(path, kind="lwlm")
        cfg = dict(meta["config"])
        cfg["patch"] = tuple(cfg["patch"])
        cfg["objectives"] = tuple(cfg["objectives"])
        cfg["snr_db"] = tuple(cfg["snr_db"])
        model = cls(**cfg)
        model.grids_ = [(int(g[0]), int(g[1])) for g in meta.get("grids", [])]
        model.power_stats_ = (float(meta["power_stats"][0]), float(meta["power_stats"][1]))
        model.pretrained_ = bool(meta["pretrained"])
        model.pretrain_losses_ = list(meta.get("pretrain_losses", []))
        model.pretrain_curve_ = list(meta.get("pretrain_curve", []))
        model.pretrain_s_ = float(meta.get("pretrain_s", 0.0))
        model.pretrain_steps_ = int(meta.get("pretrain_steps", 0))

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        if model.pretrained_:
            model.encoder_ = model._new_encoder()
            model.encoder_.load_state_dict(part("encoder."))
            model.encoder_.eval()
        for name, tm in meta["tasks"].items():
            encoder = model._new_encoder()
            encoder.load_state_dict(part(f"task.{name}.encoder."))
            encoder.eval()
            head: nn.Module = (MultiBSHead(model.config.d_model, int(tm["n_bs"])) if name == "multi-bs"
                               else ChannelHead(model.config.d_model, int(tm["out_dims"])))
            head.load_state_dict(part(f"task.{name}.head."))
            model.tasks_[name] = _Task(name, encoder, head, np.array(tm["centre"]), np.array(tm["scale"]),
                                       int(tm["bs"]), int(tm["n_bs"]), int(tm["n_labelled_users"]), int(tm["steps"]),
                                       float(tm["seconds"]), (int(tm["grid"][0]), int(tm["grid"][1])))
        return model
