"""ALLoc: analogical-learning localization (Chen et al., "analogical learning", `../shared/papers/`) and ICLLoc.

A model infers a user's location from its CSI and reference (CSI, location) pairs of the same scenario, so one
trained model serves a scenario it never saw by being handed that scenario's references -- no gradient step.

Scenario embedding (``sampling``):

* ``neighbourhood`` -- the ``n`` reference pairs nearest to the true location (training) or to a coarse location
  (inference; coarse = truth + U[-l, l] per axis, l = 1 m by default, ALLoc eq. (11));
* ``random`` -- ``n`` random reference pairs; its estimate can seed neighbourhood sampling (iterative search,
  :func:`iterative_search`).

Training (Table 2): each step draws sequences from random scenarios; each sequence takes the ``n + 1`` pairs
around a random anchor (or random pairs), then ``p`` of them at random as references and ``q`` as queries
(``p`` in [16, 64], ``q`` in [1, 64]; overlaps allowed, as in the paper). Locations enter relative to the
references' mean and divided by their spread (so metres in one scenario look like metres in another); the loss
is the MSE of the query locations; Adam with the paper's step decay (x0.2 from one third of training on, every
sixth).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError, NotFittedError
from xloc.features.csi import FEATURES, vector_features
from xloc.learn import distributed
from xloc.learn.checkpoint import load_model_folder, save_model_folder
from xloc.learn.references import ReferenceDB
from xloc.models.icl import ICLTransformer
from xloc.models.mateformer import Mateformer
from xloc.progress import note_interrupt
from xloc.progress import progress as progress_bar
from xloc.sim.impairments import coarse_locations

__all__ = ["Analogical", "ALLocConfig", "BoundAnalogical", "iterative_search", "track", "fuse_with_coarse",
           "uniform_coarse_sigma_m", "COARSE_TO_FINE"]

SAMPLINGS = ("neighbourhood", "random")
#: ALLoc trained on neighbourhoods up to 4x wider than the paper's (sparse ones too), used with the coarse-to-fine
#: search from 2.5 sigma of the coarse fix (``ALLocConfig.neighbourhood_scale``, ``search_sigmas``; ours,
#: docs/alloc.md): the registry's ``alloc-c2f-fused`` and the benches' ``alloc-c2f`` rows
COARSE_TO_FINE: dict[str, Any] = {"neighbourhood_scale": (1.0, 4.0), "search_sigmas": 2.5}
ARCHITECTURES = ("mateformer", "icl")
_SCALE_FLOOR_M = 0.1
#: share of a user's n references each uncertainty draw keeps
_DRAW_KEEP = 0.75
#: queries drawn from the training scenarios to calibrate the uncertainty
_CALIBRATION_QUERIES = 512
#: at most this many wide rounds of the coarse-to-fine search (the radius halves each round: 2^6 = 64 x)
_SEARCH_ROUNDS = 6


@dataclass(frozen=True)
class ALLocConfig:
    """Hyper-parameters (paper values in brackets; sizes scaled for 2 CPU cores)."""

    architecture: str = "mateformer"
    sampling: str = "neighbourhood"
    n_neighbors: int = 64  # n [64]
    refs_range: tuple[int, int] = (16, 64)  # p [16, 64]
    queries_range: tuple[int, int] = (1, 64)  # q [1, 64]
    d_model: int = 64  # [256]
    depth: int = 4  # [8]
    n_heads: int = 4  # [4]
    d_ff: int = 128  # [256]
    batch_size: int = 32  # [500]
    steps: int = 2000  # [300,000]
    lr: float = 1e-3  # [1e-4]
    coarse_error_m: float = 1.0  # l [1 m]
    features: str = "angle_delay"  # token of one CSI: "angle_delay" magnitudes or raw "csi" (paper: H)
    #: predictions per user for the uncertainty, each from a random 3/4 of its n references (ours, not the paper's)
    uncertainty_draws: int = 8
    #: per-axis std [m] of the coarse fixes a deployment gives; set, ``predict`` fuses ALLoc's estimate with the
    #: coarse fix by their uncertainties (None: ALLoc's estimate alone, as in the paper; eq. (11)'s U[-l, l]
    #: has std l / sqrt(3))
    coarse_sigma_m: float | None = None
    #: training neighbourhoods of n + 1 pairs drawn at random from the (n + 1) s^2 pairs nearest the anchor, s
    #: log-uniform in this range (ours, not the paper's): (1, 1) is the paper's n + 1 nearest; a wider range also
    #: teaches sparse, wide neighbourhoods, which the coarse-to-fine search starts from
    neighbourhood_scale: tuple[float, float] = (1.0, 1.0)
    #: coarse-to-fine search (ours, not the paper's): with the coarse fixes' per-axis std sigma known, the first
    #: round draws the n references at random from within ``search_sigmas`` x sigma of the coarse fix, each next
    #: round halves that radius around the last estimate, down to the n nearest pairs. 0: the paper's single
    #: neighbourhood around the coarse fix
    search_sigmas: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise DataValidationError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.features not in FEATURES:
            raise DataValidationError(f"features must be one of {sorted(FEATURES)}, got {self.features!r}")
        if self.sampling not in SAMPLINGS:
            raise DataValidationError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.coarse_sigma_m is not None and not (np.isfinite(self.coarse_sigma_m) and self.coarse_sigma_m > 0):
            raise DataValidationError(f"ALLoc: coarse_sigma_m must be a positive number of metres or None, got "
                                      f"{self.coarse_sigma_m!r}")
        for name in ("n_neighbors", "d_model", "depth", "n_heads", "d_ff", "batch_size", "uncertainty_draws"):
            if getattr(self, name) < 1:
                raise DataValidationError(f"ALLoc: {name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0 or self.lr <= 0 or self.coarse_error_m < 0:
            raise DataValidationError("ALLoc: steps >= 0, lr > 0 and coarse_error_m >= 0 are required")
        lo_s, hi_s = self.neighbourhood_scale
        if not 1 <= lo_s <= hi_s:
            raise DataValidationError(f"ALLoc: neighbourhood_scale must be (lo, hi) with 1 <= lo <= hi, got "
                                      f"{self.neighbourhood_scale}")
        object.__setattr__(self, "neighbourhood_scale", (float(lo_s), float(hi_s)))
        if not (np.isfinite(self.search_sigmas) and self.search_sigmas >= 0):
            raise DataValidationError(f"ALLoc: search_sigmas must be >= 0, got {self.search_sigmas!r}")
        for name in ("refs_range", "queries_range"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise DataValidationError(f"ALLoc: {name} must be (lo, hi) with 1 <= lo <= hi, got {(lo, hi)}")
            object.__setattr__(self, name, (int(lo), int(hi)))


def _normalise(ref_locations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence centre ``(B, 2)`` and spread ``(B,)`` of reference locations ``(B, p, 2)``."""
    centre = ref_locations.mean(1)
    spread = np.sqrt(((ref_locations - centre[:, None]) ** 2).sum(-1).mean(1)) + _SCALE_FLOOR_M
    return centre, spread


def _lr_factor(step: int, steps: int) -> float:
    """Table 2's schedule scaled to ``steps``: x0.2 from one third of training on, then every sixth."""
    first, period = max(steps // 3, 1), max(steps // 6, 1)
    return 1.0 if step < first else 0.2 ** (1 + (step - first) // period)


class Analogical:
    """ALLoc (``architecture="mateformer"``) or ICLLoc (``"icl"``): ``fit(scenarios)``, then ``predict`` in any
    scenario given its references -- or ``adapt(references)``, which only stores them (0 gradient steps)."""

    model_: torch.nn.Module
    n_features_: int
    #: the uncertainty's calibrated weights on :meth:`_evidence_m`'s terms (None: not calibrated)
    uncertainty_: dict[str, list[float]] | None
    train_s_: float
    adapt_s_: float

    def __init__(self, *, progress: bool = False, **hyper: Any) -> None:
        self.config = ALLocConfig(**hyper)
        self.progress = progress

    # ----------------------------------------------------------------- model
    def _new_model(self, n_features: int) -> torch.nn.Module:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        if cfg.architecture == "mateformer":
            return Mateformer(n_features, 2, d_model=cfg.d_model, depth=cfg.depth, n_heads=cfg.n_heads, d_ff=cfg.d_ff)
        # ICLLoc: same depth, hidden size doubled (Appendix 0.4)
        return ICLTransformer(n_features, 2, d_model=2 * cfg.d_model, depth=cfg.depth, n_heads=cfg.n_heads,
                              d_ff=2 * cfg.d_ff, max_pairs=cfg.n_neighbors + cfg.queries_range[1] + 1)

    def _forward(self, csi: np.ndarray, loc: np.ndarray, is_query: np.ndarray) -> torch.Tensor:
        """Normalised predictions at query positions ``(B, q, 2)`` for normalised inputs."""
        c = torch.from_numpy(csi)
        x = torch.from_numpy(loc.astype(np.float32))
        if self.config.architecture == "mateformer":
            out = self.model_(c, x, torch.from_numpy(is_query))
            q = int(is_query[0].sum())
            return out[:, :q]
        return self.model_(c, x)

    # ----------------------------------------------------------------- training
    def _draw(self, dbs: list[ReferenceDB], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """A training batch: csi ``(B, L, F)``, normalised locations ``(B, L, 2)``, is_query ``(B, L)`` and
        normalised targets ``(B, q, 2)`` (Mateformer) or ``(B, L, 2)`` (ICL, every CSI token)."""
        cfg = self.config
        n = cfg.n_neighbors + 1
        p = int(rng.integers(cfg.refs_range[0], min(cfg.refs_range[1], n) + 1))
        q = int(rng.integers(cfg.queries_range[0], min(cfg.queries_range[1], n) + 1))
        csis, locs = [], []
        for _ in range(cfg.batch_size):
            db = dbs[int(rng.integers(len(dbs)))]
            if cfg.sampling == "neighbourhood":
                anchor = int(rng.integers(len(db)))
                lo_s, hi_s = cfg.neighbourhood_scale
                wide = np.exp(rng.uniform(np.log(lo_s), np.log(hi_s))) if hi_s > 1 else 1.0
                pool = db.sparse_neighbourhood(db.positions_m[anchor : anchor + 1], n, np.array([round(n * wide**2)]),
                                               rng)[0]
            else:
                pool = db.random(rng, 1, n)[0]
            if cfg.architecture == "mateformer":
                seq = np.concatenate([rng.choice(pool, q, replace=False), rng.choice(pool, p, replace=False)])
            else:
                seq = rng.choice(pool, min(p + 1, len(pool)), replace=False)
            csis.append(db.features[seq])
            locs.append(db.positions_m[seq])
        csi, loc = np.stack(csis), np.stack(locs)
        if cfg.architecture == "mateformer":
            centre, spread = _normalise(loc[:, q:])
            norm = (loc - centre[:, None]) / spread[:, None, None]
            is_query = np.zeros(loc.shape[:2], dtype=bool)
            is_query[:, :q] = True
            return csi, np.where(is_query[..., None], 0.0, norm), is_query, norm[:, :q]
        centre, spread = _normalise(loc[:, :-1])
        norm = (loc - centre[:, None]) / spread[:, None, None]
        return csi, norm, np.zeros(loc.shape[:2], dtype=bool), norm

    def fit(self, scenarios: FingerprintSet) -> Analogical:
        """Train on the labelled pairs of one or more scenarios (each environment is a scenario)."""
        if scenarios is None or len(scenarios) == 0:
            raise DataValidationError("ALLoc needs at least one training scenario")
        return self.fit_references([ReferenceDB.from_fingerprints(fp, self.config.features)
                                    for fp in scenarios.values()])

    def fit_references(self, dbs: list[ReferenceDB]) -> Analogical:
        """Train on reference databases directly (one per scenario), e.g. features other than CSI."""
        cfg = self.config
        if not dbs:
            raise DataValidationError("ALLoc needs at least one training scenario")
        shapes = {db.features.shape[1] for db in dbs}
        if len(shapes) != 1:
            raise DataValidationError(
                f"training scenarios must share one CSI shape, got feature sizes {sorted(shapes)}"
            )
        self.n_features_ = shapes.pop()
        self.model_ = self._new_model(self.n_features_)
        self.loss_history_: list[float] = []
        t0 = time.perf_counter()
        self._train_steps(dbs, cfg.steps, np.random.default_rng([cfg.seed, 707]))
        self._calibrate_uncertainty(dbs, np.random.default_rng([cfg.seed, 708]))
        self.train_s_ = time.perf_counter() - t0
        return self

    def fine_tune(
        self, scenarios: FingerprintSet, steps: int, *, every: int = 0, lr: float | None = None,
        callback: Callable[[int, Analogical], None] | None = None,
    ) -> Analogical:
        """Transfer learning: a copy trained ``steps`` more on ``scenarios`` at a constant ``lr`` (default: the
        first decayed rate, 0.2 x ``config.lr``); ``callback(step, model)`` runs at step 0 and every ``every``."""
        self._check()
        dbs = [ReferenceDB.from_fingerprints(fp, self.config.features) for fp in scenarios.values()]
        if {db.features.shape[1] for db in dbs} != {self.n_features_}:
            raise DataValidationError(f"fine-tuning scenarios must give {self.n_features_} CSI features")
        tuned = copy.deepcopy(self)
        t0 = time.perf_counter()
        tuned._train_steps(dbs, steps, np.random.default_rng([self.config.seed, 708]),
                           lr=0.2 * self.config.lr if lr is None else lr, every=every, callback=callback)
        tuned.adapt_s_ = time.perf_counter() - t0
        return tuned

    def _train_steps(
        self, dbs: list[ReferenceDB], steps: int, rng: np.random.Generator, *, lr: float | None = None,
        every: int = 0, callback: Callable[[int, Analogical], None] | None = None,
    ) -> None:
        """Adam on the query MSE, with Table 2's decay (or at a constant ``lr``); Ctrl-C stops early and keeps
        the weights so far."""
        cfg = self.config
        opt = torch.optim.Adam(self.model_.parameters(), lr=cfg.lr if lr is None else lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps) if lr is None else 1.0)
        if callback is not None:
            self.model_.eval()
            callback(0, self)
        self.model_.train()
        with progress_bar(f"{cfg.architecture} ({cfg.sampling})", steps, enabled=self.progress) as bar:
            try:
                running = None
                for step in range(steps):
                    # Data-parallel when a process group exists: every rank draws the same batch, keeps its share.
                    (csi, loc, is_query, target), weight = distributed.shard_rows(*self._draw(dbs, rng))
                    pred = self._forward(csi, loc, is_query)
                    t = torch.from_numpy(target.astype(np.float32))
                    if cfg.architecture == "icl":
                        pred, t = pred[:, 1:], t[:, 1:]  # the first pair has no context
                    loss = ((pred - t) ** 2).sum(-1).mean()
                    opt.zero_grad()
                    loss.backward()
                    distributed.sum_module_gradients(self.model_.parameters(), weight)
                    opt.step()
                    sched.step()
                    value = float(loss.detach())
                    running = value if running is None else 0.98 * running + 0.02 * value
                    if step % 50 == 0 or step == steps - 1:
                        self.loss_history_.append(running)
                        bar.advance(0, loss=f"{running:.4f}")
                    bar.advance()
                    if callback is not None and every and (step + 1) % every == 0:
                        self.model_.eval()
                        callback(step + 1, self)
                        self.model_.train()
            except KeyboardInterrupt:  # keep what was learned; the command line marks the model interrupted
                note_interrupt(f"{cfg.architecture} training", bar.done, steps)
        self.model_.eval()

    # ----------------------------------------------------------------- inference
    def _check(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("ALLoc is not fitted: call fit(scenarios) first")

    def predict(
        self,
        csi: np.ndarray,
        references: Fingerprints | ReferenceDB,
        coarse: np.ndarray | None = None,
        *,
        n_references: int | None = None,
        search_sigma_m: float | np.ndarray | None = None,
        seed: int = 0,
        chunk: int = 512,
    ) -> np.ndarray:
        """Positions [m] ``(T, 2)`` of CSI ``(T, bs, antennas, subcarriers)`` (or ready features ``(T, F)``) in the
        scenario of ``references``.

        ``coarse`` ``(T, 2)`` [m] centres neighbourhood sampling (required for ``sampling="neighbourhood"``);
        ``n_references`` defaults to the configured n. ``search_sigma_m`` (per-axis std [m] of the coarse fixes,
        scalar or ``(T,)``; default the configured ``coarse_sigma_m``) sizes the first round of the coarse-to-fine
        search when ``search_sigmas`` > 0.
        """
        self._check()
        db = self.references(references)
        feats = self._features(csi, db)
        idx = self._reference_indices(db, len(feats), coarse, n_references, seed)
        idx = self._search(feats, db, coarse, idx, search_sigma_m, seed, chunk)
        return self._predict_sets(feats, db, idx, chunk)

    def predict_with_spread(
        self,
        csi: np.ndarray,
        references: Fingerprints | ReferenceDB,
        coarse: np.ndarray | None = None,
        *,
        coarse_sigma_m: float | np.ndarray | None = None,
        n_references: int | None = None,
        search_sigma_m: float | np.ndarray | None = None,
        seed: int = 0,
        chunk: int = 512,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions [m] ``(T, 2)`` as :meth:`predict`, and each one's uncertainty ``(T,)`` [m]: the per-axis std of
        an isotropic Gaussian error (the true position lies within 1 sigma of the estimate for 39 % of users and
        within 2 sigma for 86 %, if calibrated).

        The uncertainty combines the terms of :meth:`_evidence_m` (the spread of ``uncertainty_draws`` predictions
        from random 3/4 subsets of the references, the references' spread, the query's feature mismatch) with the
        weights :meth:`fit` calibrated on its training scenarios.
        With ``coarse_sigma_m`` (per-axis std [m] of each coarse fix, scalar or ``(T,)``) the estimate is fused with
        ``coarse`` by inverse variance (:func:`fuse_with_coarse`), so that it falls back on the coarse fix where
        the references do not help. ``search_sigma_m`` as in :meth:`predict` (default: ``coarse_sigma_m``).
        """
        self._check()
        if getattr(self, "uncertainty_", None) is None:
            raise NotFittedError("this ALLoc model has no calibrated uncertainty (saved by an older xloc): fit it "
                                 "again")
        db = self.references(references)
        feats = self._features(csi, db)
        idx = self._reference_indices(db, len(feats), coarse, n_references, seed)
        idx = self._search(feats, db, coarse, idx, coarse_sigma_m if search_sigma_m is None else search_sigma_m,
                           seed, chunk)
        positions_m = self._predict_sets(feats, db, idx, chunk)
        sigma_m = self._sigma_m(feats, db, idx, np.random.default_rng([seed, 709]), chunk)
        if coarse_sigma_m is None:
            return positions_m, sigma_m
        if coarse is None:
            raise DataValidationError("coarse_sigma_m fuses with a coarse fix: pass coarse locations too")
        c_sigma = np.broadcast_to(np.asarray(coarse_sigma_m, dtype=np.float64), (len(feats),))
        if not (np.isfinite(c_sigma).all() and (c_sigma > 0).all()):
            raise DataValidationError("coarse_sigma_m must be positive metres (a scalar or one per measurement)")
        return fuse_with_coarse(positions_m, sigma_m, np.asarray(coarse, dtype=np.float64)[:, :2], c_sigma)

    def _features(self, csi: np.ndarray, db: ReferenceDB) -> np.ndarray:
        cfg = self.config
        feats = np.asarray(csi, dtype=np.float32) if np.asarray(csi).ndim == 2 else vector_features(csi, cfg.features)
        if feats.shape[1] != self.n_features_ or db.features.shape[1] != self.n_features_:
            raise DataValidationError(
                f"CSI gives {feats.shape[1]} features and the references {db.features.shape[1]}; the model was "
                f"trained on {self.n_features_} (same BS/antenna/subcarrier counts needed)"
            )
        return feats

    def _reference_indices(self, db: ReferenceDB, count: int, coarse: np.ndarray | None, n_references: int | None,
                           seed: int) -> np.ndarray:
        """``(count, n)`` reference indices: around each coarse location, or at random."""
        cfg = self.config
        n = min(n_references or cfg.n_neighbors, len(db))
        if cfg.sampling == "random":
            return db.random(np.random.default_rng(seed), count, n)
        if coarse is None:
            raise DataValidationError(
                "neighbourhood sampling needs coarse locations (e.g. GNSS, or iterative_search with a "
                "random-sampling model)"
            )
        coarse = np.asarray(coarse, dtype=np.float64)
        if coarse.ndim != 2 or coarse.shape[0] != count or coarse.shape[1] < 2 or not np.isfinite(coarse).all():
            raise DataValidationError(f"coarse must be finite ({count}, 2) metres, got {coarse.shape}")
        return db.neighbourhood(coarse, n)

    def _search(self, feats: np.ndarray, db: ReferenceDB, coarse: np.ndarray | None, idx: np.ndarray,
                sigma_m: float | np.ndarray | None, seed: int, chunk: int) -> np.ndarray:
        """The coarse-to-fine search's final reference indices ``(T, n)`` (``idx`` unchanged when it is off):
        round r draws the n references at random from within ``search_sigmas`` x sigma / 2^r of the last estimate
        (the coarse fix first) and localizes among them; once that radius holds no more than n pairs, the n
        nearest to the last estimate are the references."""
        cfg = self.config
        sigma = cfg.coarse_sigma_m if sigma_m is None else sigma_m
        if cfg.sampling != "neighbourhood" or cfg.search_sigmas <= 0 or sigma is None or coarse is None:
            return idx
        n = idx.shape[1]
        radius = cfg.search_sigmas * np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(feats),)).copy()
        if not (np.isfinite(radius).all() and (radius > 0).all()):
            raise DataValidationError("search_sigma_m must be positive metres (a scalar or one per measurement)")
        centre = np.asarray(coarse, dtype=np.float64)[:, :2].copy()
        rng = np.random.default_rng([seed, 313])
        for _ in range(_SEARCH_ROUNDS):
            pool = db.count_within(centre, radius)
            wide = np.flatnonzero(pool > n)
            if not len(wide):
                break
            for s in range(0, len(wide), 256):  # (256, pool) neighbour lists at a time
                rows = wide[s : s + 256]
                sub = db.sparse_neighbourhood(centre[rows], n, pool[rows], rng)
                centre[rows] = self._predict_sets(feats[rows], db, sub, chunk)
            radius /= 2
        return db.neighbourhood(centre, n)

    def _predict_sets(self, feats: np.ndarray, db: ReferenceDB, idx: np.ndarray, chunk: int) -> np.ndarray:
        """Positions [m] ``(T, 2)`` of features ``(T, F)``, each localized among its references ``idx[t]``."""
        cfg = self.config
        out = np.empty((len(feats), 2))
        with torch.no_grad():
            for s in range(0, len(feats), chunk):
                sl = slice(s, s + chunk)
                ref_csi, ref_loc = db.features[idx[sl]], db.positions_m[idx[sl]]
                centre, spread = _normalise(ref_loc)
                ref_norm = (ref_loc - centre[:, None]) / spread[:, None, None]
                q_csi = feats[sl][:, None]
                zeros = np.zeros((len(q_csi), 1, 2))
                if cfg.architecture == "mateformer":
                    csi_seq = np.concatenate([q_csi, ref_csi], 1)
                    loc_seq = np.concatenate([zeros, ref_norm], 1)
                    is_query = np.zeros(loc_seq.shape[:2], dtype=bool)
                    is_query[:, 0] = True
                    pred = self._forward(csi_seq, loc_seq, is_query)[:, 0].numpy()
                else:
                    csi_seq = np.concatenate([ref_csi, q_csi], 1)
                    loc_seq = np.concatenate([ref_norm, zeros], 1)
                    pred = self._forward(csi_seq, loc_seq, np.zeros(loc_seq.shape[:2], dtype=bool))[:, -1].numpy()
                out[sl] = centre + spread[:, None] * pred
        return out

    def _evidence_m(self, feats: np.ndarray, db: ReferenceDB, idx: np.ndarray, rng: np.random.Generator,
                    chunk: int) -> np.ndarray:
        """What each user's uncertainty is made of, in metres ``(T, 3)``:

        * the per-axis RMS spread of ``uncertainty_draws`` predictions, each from a random 3/4 of its references
          (the model disagreeing with itself);
        * the references' own spread (the model's unit of length: its error floor scales with it);
        * that spread times the query's feature mismatch -- its feature distance to the nearest reference over the
          references' median nearest-neighbour feature distance -- which grows when the user stands outside the
          sampled neighbourhood (a coarse fix that is far off) or where references are sparse.
        """
        draws, n = self.config.uncertainty_draws, idx.shape[1]
        keep = max(1, int(round(_DRAW_KEEP * n)))
        pick = np.argsort(rng.random((len(idx), draws, n)), axis=-1)[..., :keep]
        sub = np.take_along_axis(np.repeat(idx[:, None], draws, 1), pick, -1).reshape(-1, keep)
        preds = self._predict_sets(np.repeat(feats, draws, 0), db, sub, chunk).reshape(len(idx), draws, 2)
        spread_m = np.sqrt(((preds - preds.mean(1, keepdims=True)) ** 2).sum(-1).mean(1) / 2)
        unit_m = _normalise(db.positions_m[idx])[1]
        mismatch = np.empty(len(idx))
        for s in range(0, len(idx), 64):  # (64, n, F) at a time: n x n distances via Gram matrices, not differences
            refs = db.features[idx[s : s + 64]].astype(np.float64)
            q = feats[s : s + 64].astype(np.float64)
            sq = (refs**2).sum(-1)
            to_query = sq - 2 * np.einsum("tnf,tf->tn", refs, q) + (q**2).sum(-1)[:, None]
            among = sq[:, :, None] + sq[:, None] - 2 * np.einsum("tnf,tmf->tnm", refs, refs)
            among[:, np.arange(n), np.arange(n)] = np.inf
            typical = np.median(np.sqrt(np.maximum(among.min(2), 0)), axis=1) if n > 1 else np.ones(len(refs))
            mismatch[s : s + 64] = np.sqrt(np.maximum(to_query.min(1), 0)) / np.maximum(typical, 1e-12)
        return np.stack([spread_m, unit_m, mismatch * unit_m], 1)

    def _sigma_m(self, feats: np.ndarray, db: ReferenceDB, idx: np.ndarray,
                 rng: np.random.Generator, chunk: int) -> np.ndarray:
        weights = np.asarray((self.uncertainty_ or {}).get("weights", [np.nan] * 3))  # predict_with_spread checked
        return np.sqrt(((weights * self._evidence_m(feats, db, idx, rng, chunk)) ** 2).sum(1))

    def _calibrate_uncertainty(self, dbs: list[ReferenceDB], rng: np.random.Generator) -> None:
        """Fit sigma = sqrt(sum_k (w_k e_k)^2) over :meth:`_evidence_m`'s terms e_k by the Gaussian likelihood of
        held-out queries of the training scenarios: each query is localized with itself left out of its references,
        as an unseen user would be -- among random pairs, or among its neighbours around a coarse fix truth +
        U[-l, l] (eq. (11)) with l log-uniform in [config l, 20 config l], so that far-off fixes are seen too."""
        from scipy.optimize import minimize

        cfg = self.config
        per_db = max(1, _CALIBRATION_QUERIES // len(dbs))
        evidence, errors = [], []
        for db in dbs:
            if len(db) < 3:
                continue
            queries = rng.choice(len(db), min(per_db, len(db)), replace=False)
            n = min(cfg.n_neighbors, len(db) - 1)
            if cfg.sampling == "neighbourhood":
                l_m = max(cfg.coarse_error_m, 1e-3) * np.exp(rng.uniform(0, np.log(20), len(queries)))
                coarse = db.positions_m[queries] + rng.uniform(-1, 1, (len(queries), 2)) * l_m[:, None]
                pool = db.neighbourhood(coarse, n + 1)
            else:
                pool = db.random(rng, len(queries), n + 1)
            own = pool == queries[:, None]
            drop = np.where(own.any(1), own.argmax(1), n)  # leave the query out (or the farthest pair)
            idx = pool[np.arange(n + 1)[None] != drop[:, None]].reshape(len(queries), n)
            feats = db.features[queries]
            errors.append(np.linalg.norm(self._predict_sets(feats, db, idx, 512) - db.positions_m[queries], axis=1))
            evidence.append(self._evidence_m(feats, db, idx, rng, 512))
        if not errors:
            self.uncertainty_ = {"weights": [1.0, 1.0, 1.0]}
            return
        ev, e2 = np.concatenate(evidence), np.concatenate(errors) ** 2

        def nll(log_w: np.ndarray) -> float:  # 2-D isotropic Gaussian, up to a constant
            var = ((np.exp(log_w) * ev) ** 2).sum(1) + 1e-12
            return float(np.mean(np.log(var) + e2 / (2 * var)))

        starts = [np.log([1.0, 0.3, 0.3]), np.log([3.0, 0.1, 1.0]), np.log([0.3, 1.0, 0.1])]
        best = min((minimize(nll, x0, method="Nelder-Mead", options={"maxiter": 400}) for x0 in starts),
                   key=lambda r: r.fun)
        self.uncertainty_ = {"weights": [float(w) for w in np.exp(best.x)]}

    def adapt(self, support: Fingerprints, steps: int | None = None) -> BoundAnalogical:
        """Bind the new scenario's labelled pairs as references; no gradient step is taken."""
        self._check()
        return BoundAnalogical(self, self.references(support))

    def references(self, data: Fingerprints | ReferenceDB) -> ReferenceDB:
        """``data`` as a reference database in this model's feature space."""
        if isinstance(data, ReferenceDB):
            if data.feature_kind not in (None, self.config.features):
                raise DataValidationError(f"references {data.name!r} hold {data.feature_kind!r} features; this "
                                          f"model uses {self.config.features!r}")
            return data
        return ReferenceDB.from_fingerprints(data, self.config.features)

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        self._check()
        meta = {"kind": "Analogical", "config": asdict(self.config), "n_features": self.n_features_,
                "train_s": self.train_s_, "loss_history": self.loss_history_,
                "uncertainty": getattr(self, "uncertainty_", None)}
        return save_model_folder(path, dict(self.model_.state_dict()), meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Analogical:
        tensors, meta = load_model_folder(path, "Analogical")
        obj = cls(**meta["config"])
        obj.n_features_ = int(meta["n_features"])
        obj.model_ = obj._new_model(obj.n_features_)
        obj.model_.load_state_dict(tensors)
        obj.model_.eval()
        obj.train_s_ = meta["train_s"]
        obj.loss_history_ = meta["loss_history"]
        obj.uncertainty_ = meta.get("uncertainty")
        return obj


class BoundAnalogical:
    """An ALLoc model with one scenario's references; ``predict(csi, coarse=...)``."""

    def __init__(self, model: Analogical, references: ReferenceDB) -> None:
        self.model = model
        self.references = references
        self.adapt_steps_ = 0

    def predict(self, measurements: np.ndarray, coarse: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        return self.model.predict(measurements, self.references, coarse, **kwargs)


def uniform_coarse_sigma_m(l_m: float) -> float:
    """Per-axis std [m] of eq. (11)'s coarse error U[-l, l]: l / sqrt(3)."""
    return float(l_m) / np.sqrt(3.0)


def fuse_with_coarse(positions_m: np.ndarray, sigma_m: np.ndarray, coarse_m: np.ndarray,
                     coarse_sigma_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance fusion of two isotropic Gaussian estimates ``(T, 2)`` [m] with per-axis stds ``(T,)`` [m]:
    ``x = (x_a / s_a^2 + x_c / s_c^2) / (1 / s_a^2 + 1 / s_c^2)``, ``s = (1 / s_a^2 + 1 / s_c^2)^(-1/2)``. Treats the
    two errors as independent, which neighbourhood sampling around the coarse fix makes only approximately so."""
    w_a, w_c = 1.0 / np.square(sigma_m), 1.0 / np.square(coarse_sigma_m)
    fused = (positions_m * w_a[:, None] + coarse_m * w_c[:, None]) / (w_a + w_c)[:, None]
    return fused, 1.0 / np.sqrt(w_a + w_c)


def iterative_search(
    random_model: Analogical, neighbourhood_model: Analogical, csi: np.ndarray,
    references: Fingerprints | ReferenceDB, *, rounds: int = 1, seed: int = 0,
) -> np.ndarray:
    """ALLoc without GNSS: a random-sampling estimate seeds neighbourhood sampling, ``rounds`` times."""
    if random_model.config.sampling != "random" or neighbourhood_model.config.sampling != "neighbourhood":
        raise DataValidationError("iterative_search needs a random-sampling and a neighbourhood-sampling model")
    if random_model.config.features != neighbourhood_model.config.features:
        raise DataValidationError("iterative_search: both models must use the same CSI features")
    db = neighbourhood_model.references(references)
    estimate = random_model.predict(csi, db, seed=seed)
    for _ in range(rounds):
        estimate = neighbourhood_model.predict(csi, db, estimate)
    return estimate


def track(
    model: Analogical, csi: np.ndarray, references: Fingerprints | ReferenceDB,
    first_coarse_m: np.ndarray | None = None, *, random_model: Analogical | None = None, seed: int = 0,
) -> np.ndarray:
    """Trajectory tracking (ALLoc Fig. 6c/d): positions [m] ``(T, 2)`` of a user's consecutive CSI samples, each
    localized with the previous estimate as its coarse fix. The first sample's coarse fix is ``first_coarse_m``
    ``(2,)`` [m] (e.g. GNSS), or, without one, ``random_model``'s iterative search (:func:`iterative_search`)."""
    if model.config.sampling != "neighbourhood":
        raise DataValidationError("track needs a neighbourhood-sampling model: its previous estimate is the coarse "
                                  "fix")
    db = model.references(references)
    feats = model._features(csi, db)
    if first_coarse_m is not None:
        previous = np.asarray(first_coarse_m, dtype=np.float64).reshape(-1)[:2]
        if previous.shape != (2,) or not np.isfinite(previous).all():
            raise DataValidationError(f"first_coarse_m must be one finite (x, y) position [m], got {first_coarse_m!r}")
    elif random_model is not None:
        previous = iterative_search(random_model, model, feats[:1], db, seed=seed)[0]
    else:
        raise DataValidationError("track needs the first sample's coarse fix (first_coarse_m, e.g. GNSS) or a "
                                  "random-sampling model to find it (random_model)")
    out = np.empty((len(feats), 2))
    for t in range(len(feats)):  # sequential by nature: each fix is the last estimate
        idx = model._reference_indices(db, 1, previous[None], None, seed)
        previous = out[t] = model._predict_sets(feats[t : t + 1], db, idx, 1)[0]
    return out


def coarse_from_truth(positions_m: np.ndarray, error_m: float, seed: int = 0) -> np.ndarray:
    """Coarse locations as in the paper's inference protocol: truth + U[-l, l] per axis (eq. (11))."""
    return coarse_locations(positions_m, error_m, np.random.default_rng(seed))[:, :2]
