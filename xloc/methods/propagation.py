"""Semi-supervised radio maps: positions propagated from the support over the target's unlabelled fingerprints.

A new building comes with a few labelled reference points and, for free, many fingerprints without positions (the
rest of a survey walk, crowd-sourced scans). ``graph-lp`` and ``maml-dg-graph`` turn them into a dense radio map:

1. nodes: each support point's mean fingerprint (position known) and each unlabelled point's mean fingerprint
   (samples sharing a point id are one node; their positions are never read), RSS [dBm] with "not heard" at
   ``floor_dbm``;
2. a prior position for every node (``maml-dg-graph``): MetaLoc MAML-DG, meta-trained on the historical buildings
   and adapted on the support, applied to each unlabelled sample and averaged per node;
3. positions propagated over the signal-space graph, penalising their curvature along it (``order = 2``; the
   harmonic ``order = 1`` goes flat with few labels), with the prior's pull ``mu``
   (:func:`xloc.learn.propagation.propagate_positions`); ``mu`` is chosen per target by leave-one-point-out over
   the support: each labelled point (at most ``max_folds``) is held out, the prior re-adapted without it, and its
   position propagated from the others -- the labels of the target's support are the only ones read;
4. WKNN on the propagated map answers the queries.

The graph's ``order`` and ``n_neighbours`` are fixed hyper-parameters, or (``settings``: candidate pairs) chosen
on the historical environments alone: ``fit(sources)`` plays the target's task on each source -- ``k`` of its
reference points labelled, the rest unlabelled -- for each ``k`` of ``tune_ks`` and ``tune_draws`` random draws,
and scores every candidate by the mean error [m] of the propagated positions of the unlabelled points (the
sources' positions are known); ``adapt`` takes the best candidate of the ``tune_ks`` entry nearest (in log) to
the support's number of points. Nothing of the target but its support and unlabelled fingerprints is read.

Without unlabelled fingerprints the map is the support's points and the method is WKNN on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.baselines.knn import KNNLocalizer
from xloc.data.fingerprints import Fingerprints, FingerprintSet
from xloc.errors import DataValidationError
from xloc.learn.base import Estimator
from xloc.learn.propagation import propagate_positions, signal_graph
from xloc.methods.registry import Capabilities, MethodSpec, create, get, load_model, register

__all__ = ["GRAPH_SETTINGS", "GraphPropagation", "GraphPropagationConfig"]


@dataclass(frozen=True)
class GraphPropagationConfig:
    """Hyper-parameters of graph propagation."""

    #: registered method whose adapted estimate is the prior (None: no prior, harmonic propagation alone)
    prior: str | None = "maml-dg"
    #: meta-iterations of the prior's training (None: its default)
    prior_iterations: int | None = None
    #: other hyper-parameters of the prior, as (name, value) pairs
    prior_params: tuple[tuple[str, Any], ...] = ()
    #: neighbours of each node in the signal-space graph
    n_neighbours: int = 10
    #: power p of the graph Laplacian in the energy: 1 harmonic (stays inside the labels' hull), 2 curvature
    order: int = 2
    #: candidate pulls mu towards the prior, chosen by leave-one-point-out over the support
    prior_weights: tuple[float, ...] = (0.0, 0.03, 0.1, 0.3, 1.0)
    #: support points held out in turn to choose the pull (at most; drawn by ``seed``)
    max_folds: int = 10
    #: neighbours of the WKNN on the propagated map
    k: int = 5
    #: value [dBm] that stands for "not heard"
    floor_dbm: float = -105.0
    #: candidate (order, n_neighbours) pairs chosen on the sources by ``fit`` (empty: ``order``, ``n_neighbours``)
    settings: tuple[tuple[int, int], ...] = ()
    #: labelled points per simulated task on a source when choosing among ``settings``
    tune_ks: tuple[int, ...] = (5, 10, 20)
    #: random draws of the labelled points per source and k
    tune_draws: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prior is not None:
            get(self.prior)  # a clear error naming the registered methods
            if get(self.prior).estimator is GraphPropagation:
                raise DataValidationError(f"prior must be a method other than graph propagation, got {self.prior!r}")
        if self.order not in (1, 2, 3):
            raise DataValidationError(f"order must be 1, 2 or 3, got {self.order}")
        if self.n_neighbours < 1 or self.k < 1 or self.max_folds < 1:
            raise DataValidationError(f"n_neighbours, k and max_folds must be >= 1, got {self.n_neighbours}, "
                                      f"{self.k} and {self.max_folds}")
        weights = tuple(float(w) for w in self.prior_weights)
        if not weights or min(weights) < 0 or not np.all(np.isfinite(weights)):
            raise DataValidationError(f"prior_weights must be finite values >= 0, got {self.prior_weights}")
        object.__setattr__(self, "prior_weights", weights)
        try:
            pairs = tuple((str(k), v) for k, v in (self.prior_params.items() if isinstance(self.prior_params, dict)
                                                   else self.prior_params))
        except (TypeError, ValueError):
            raise DataValidationError(f"prior_params must be (name, value) pairs, got {self.prior_params!r}") from None
        if pairs and self.prior is None:
            raise DataValidationError("prior_params given without a prior")
        object.__setattr__(self, "prior_params", pairs)
        if self.prior_iterations is not None and self.prior_iterations < 0:
            raise DataValidationError(f"prior_iterations must be >= 0, got {self.prior_iterations}")
        try:
            settings = tuple((int(o), int(n)) for o, n in self.settings)
        except (TypeError, ValueError):
            raise DataValidationError(f"settings must be (order, n_neighbours) pairs, got {self.settings!r}") from None
        if any(o not in (1, 2, 3) or n < 1 for o, n in settings):
            raise DataValidationError(f"settings: orders must be 1, 2 or 3 and n_neighbours >= 1, got {settings}")
        object.__setattr__(self, "settings", settings)
        if not self.tune_ks or min(self.tune_ks) < 1 or self.tune_draws < 1:
            raise DataValidationError(f"tune_ks must be values >= 1 and tune_draws >= 1, got {self.tune_ks} and "
                                      f"{self.tune_draws}")
        object.__setattr__(self, "tune_ks", tuple(sorted(int(k) for k in self.tune_ks)))


def _node_means(values: np.ndarray, inverse: np.ndarray, n_nodes: int) -> np.ndarray:
    """Mean of ``values (n, d)`` per node, ``inverse (n,)`` giving each row's node."""
    total = np.zeros((n_nodes, values.shape[1]))
    np.add.at(total, inverse, values)
    return total / np.maximum(np.bincount(inverse, minlength=n_nodes), 1)[:, None]


def _unlabelled_nodes(fp: Fingerprints, floor_dbm: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean filled RSS [dBm] per point id ``(n_nodes, n_ap)`` and each sample's node ``(n,)``; no position read."""
    ids, inverse = np.unique(fp.point_ids, return_inverse=True)
    filled = np.where(np.isnan(fp.measurements), floor_dbm, fp.measurements).astype(np.float64)
    return _node_means(filled, inverse, ids.size), inverse


class GraphPropagation(Estimator):
    """WKNN on a radio map whose unlabelled fingerprints got positions by propagation (module docstring)."""

    Config = GraphPropagationConfig
    kinds = ("rss",)

    def fit(self, sources: FingerprintSet | None = None) -> GraphPropagation:
        """Choose the graph among ``settings`` and train the prior on the historical environments (nothing to
        learn without either)."""
        self._check_kind(sources, "source")
        cfg = self.config
        if cfg.settings:
            if sources is None or len(sources) == 0:
                raise DataValidationError(f"{self._owner()}: choosing among settings {list(cfg.settings)} needs the "
                                          "historical environments; give fit() the sources")
            self.setting_scores_ = self._score_settings(sources)
        if cfg.prior is None:
            return self
        if sources is None and get(cfg.prior).capabilities.trains_on_sources:
            raise DataValidationError(f"{self._owner()}: the prior {cfg.prior!r} trains on historical environments; "
                                      "give fit() the sources")
        budget = get(cfg.prior).capabilities.budget_field
        extra = {budget: cfg.prior_iterations} if budget and cfg.prior_iterations is not None else {}
        self.prior_ = create(cfg.prior, cfg.seed, **dict(cfg.prior_params), **extra).fit(sources)
        self.train_s_ = float(getattr(self.prior_, "train_s_", 0.0))
        return self

    def _score_settings(self, sources: FingerprintSet) -> dict[int, dict[tuple[int, int], float]]:
        """Mean error [m] of the propagated unlabelled positions per ``tune_ks`` entry and candidate setting, over
        the sources and ``tune_draws`` draws of labelled points (module docstring)."""
        cfg = self.config
        errors: dict[int, dict[tuple[int, int], list[float]]] = {}
        for index, fp in enumerate(sources.values()):
            rss, positions, _ = fp.point_means(cfg.floor_dbm)
            graphs = {n: signal_graph(rss.astype(np.float64), n) for n in {n for _, n in cfg.settings}}
            rng = np.random.default_rng([cfg.seed, 808, index])
            for k in cfg.tune_ks:
                if k > len(rss) - 2:  # too few points left unlabelled to score
                    continue
                for _ in range(cfg.tune_draws):
                    labelled = rng.choice(len(rss), size=k, replace=False)
                    unl = np.setdiff1d(np.arange(len(rss)), labelled)
                    for order, n in cfg.settings:
                        estimate = propagate_positions(graphs[n], labelled, positions[labelled], order=order)
                        err = np.linalg.norm(estimate[unl, :2] - positions[unl, :2], axis=1).mean()
                        errors.setdefault(k, {}).setdefault((order, n), []).append(float(err))
        if not errors:
            raise DataValidationError(f"{self._owner()}: every source has fewer than {cfg.tune_ks[0] + 2} reference "
                                      "points; choosing among settings needs more")
        return {k: {s: float(np.mean(e)) for s, e in by_setting.items()} for k, by_setting in errors.items()}

    def _graph_setting(self, n_labelled: int) -> tuple[int, int]:
        """(order, n_neighbours): the sources' best for the scored k nearest to ``n_labelled`` in log, or the
        configured pair."""
        scores = getattr(self, "setting_scores_", None)
        if not scores:
            return self.config.order, self.config.n_neighbours
        k = min(scores, key=lambda kk: (abs(np.log(kk) - np.log(max(n_labelled, 1))), kk))
        return min(scores[k], key=lambda s: (scores[k][s], s))

    def adapt(self, support: Fingerprints, *, steps: int | None = None,
              unlabelled: Fingerprints | None = None) -> GraphPropagation:
        """Propagate the support's positions over ``support`` and ``unlabelled`` (same environment and APs);
        ``steps`` goes to the prior's adaptation."""
        self._check_kind(support, "support")
        self._check_kind(unlabelled, "unlabelled")
        cfg = self.config
        if cfg.prior is not None:
            self._require("prior_")
        if cfg.settings:
            self._require("setting_scores_")
        if unlabelled is not None and unlabelled.measurements.shape[1:] != support.measurements.shape[1:]:
            raise DataValidationError(
                f"{self._owner()}: unlabelled environment {unlabelled.name!r} has {unlabelled.measurements.shape[1]} "
                f"APs, the support {support.name!r} {support.measurements.shape[1]}")
        rss_l, pos_l, ids_l = support.point_means(cfg.floor_dbm)
        n_l = len(ids_l)
        order, n_neighbours = self._graph_setting(n_l)
        if unlabelled is None or len(unlabelled) == 0:
            scores: dict[str, float] = {}
            features, positions, chosen = rss_l.astype(np.float64), pos_l, 0.0
        else:
            rss_u, node_of_sample = _unlabelled_nodes(unlabelled, cfg.floor_dbm)
            features = np.concatenate([rss_l.astype(np.float64), rss_u])
            graph = signal_graph(features, n_neighbours)
            prior = self._prior_positions(support, unlabelled, node_of_sample, len(rss_u), pos_l, steps)[0]
            chosen, scores = self._choose_weight(graph, support, unlabelled, node_of_sample, len(rss_u), ids_l,
                                                 pos_l, prior, steps, order)
            positions = propagate_positions(graph, np.arange(n_l), pos_l, prior, chosen, order)
        engine = KNNLocalizer(cfg.k, weighted=True, floor_dbm=cfg.floor_dbm, average_points=False) \
            .fit_arrays(features, positions)
        return self._adapted_copy(engine_=engine, map_rss_dbm_=features, map_positions_m_=positions,
                                  prior_weight_=chosen, prior_weight_scores_=scores, order_=order,
                                  n_neighbours_=n_neighbours, sample_shape_=support.measurements.shape[1:],
                                  adapt_steps_=0)

    def _prior_positions(self, support: Fingerprints, unlabelled: Fingerprints, node_of_sample: np.ndarray,
                         n_u: int, pos_l: np.ndarray, steps: int | None) -> tuple[np.ndarray | None, Any]:
        """Prior position of every node ``(n_l + n_u, dims)`` (labelled rows: ``pos_l``) from the prior adapted on
        ``support``, and that adapted prior."""
        if self.config.prior is None:
            return None, None
        # a prior that reads unlabelled fingerprints itself (AGML's graph) gets the same ones
        extra = {"unlabelled": unlabelled} if get(self.config.prior).capabilities.uses_unlabelled else {}
        adapted = self.prior_.adapt(support, steps=steps, **extra)
        guess = np.asarray(adapted.predict(unlabelled.measurements), dtype=np.float64)
        dims = min(guess.shape[1], pos_l.shape[1])
        prior = np.zeros((len(pos_l) + n_u, pos_l.shape[1]))
        prior[: len(pos_l)] = pos_l
        prior[len(pos_l):, :dims] = _node_means(guess[:, :dims], node_of_sample, n_u)
        return prior, adapted

    def _choose_weight(self, graph: Any, support: Fingerprints, unlabelled: Fingerprints,
                       node_of_sample: np.ndarray, n_u: int, ids_l: np.ndarray, pos_l: np.ndarray,
                       prior: np.ndarray | None, steps: int | None, order: int) -> tuple[float, dict[str, float]]:
        """``mu`` with the lowest mean error [m] over the support's points, each held out in turn (the prior
        re-adapted without it); ties go to the smaller ``mu``."""
        if prior is None:
            return 0.0, {}
        weights = self.config.prior_weights
        if len(weights) == 1 or len(ids_l) < 3:
            return weights[0], {}
        errors: dict[float, list[float]] = {w: [] for w in weights}
        folds = np.random.default_rng([self.config.seed, 404]).permutation(len(ids_l))[: self.config.max_folds]
        for held in folds:
            at_held = support.point_ids == ids_l[held]
            rest = support.subset(np.flatnonzero(~at_held))
            keep = np.delete(np.arange(len(ids_l)), held)
            fold_prior, adapted = self._prior_positions(rest, unlabelled, node_of_sample, n_u, pos_l, steps)
            assert fold_prior is not None
            guess = np.asarray(adapted.predict(support.measurements[at_held]), dtype=np.float64)
            dims = min(guess.shape[1], pos_l.shape[1])
            fold_prior[held, :dims] = guess[:, :dims].mean(0)  # the held-out point is an unlabelled node now
            for w in weights:
                estimate = propagate_positions(graph, keep, pos_l[keep], fold_prior, w, order)[held]
                errors[w].append(float(np.linalg.norm(estimate[:2] - pos_l[held, :2])))
        scores = {str(w): float(np.mean(e)) for w, e in errors.items()}
        return min(weights, key=lambda w: (float(np.mean(errors[w])), w)), scores

    def predict(self, measurements: np.ndarray, *, references: Fingerprints | None = None,
                coarse_positions_m: np.ndarray | None = None) -> np.ndarray:
        self._require("engine_", what="adapt(support)")
        x = self._check_measurements(measurements, "rss", self.sample_shape_)
        return self.engine_.predict(x)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        parts: dict[str, Any] = {}
        if hasattr(self, "prior_"):
            parts["prior"] = self.prior_.save
        meta: dict[str, Any] = {"fitted": hasattr(self, "prior_")}
        if hasattr(self, "setting_scores_"):  # JSON: [k, order, n_neighbours, mean error m] rows
            meta["setting_scores"] = [[k, o, n, e] for k, by in self.setting_scores_.items()
                                      for (o, n), e in by.items()]
        if not hasattr(self, "engine_"):
            return {}, meta, parts
        tensors = {"map_rss_dbm": torch.from_numpy(np.array(self.map_rss_dbm_, copy=True)),
                   "map_positions_m": torch.from_numpy(np.array(self.map_positions_m_, copy=True))}
        meta.update(sample_shape=list(self.sample_shape_), prior_weight=self.prior_weight_,
                    prior_weight_scores=self.prior_weight_scores_, order=self.order_, n_neighbours=self.n_neighbours_)
        return tensors, meta, parts

    def _restore(self, tensors: dict[str, Any], meta: dict[str, Any], folder: Path) -> None:
        if meta.get("fitted"):
            self.prior_ = load_model(folder / "prior")
            self.train_s_ = float(getattr(self.prior_, "train_s_", 0.0))
        if "setting_scores" in meta:
            scores: dict[int, dict[tuple[int, int], float]] = {}
            for k, o, n, e in meta["setting_scores"]:
                scores.setdefault(int(k), {})[(int(o), int(n))] = float(e)
            self.setting_scores_ = scores
        if "map_rss_dbm" in tensors:
            self.map_rss_dbm_ = tensors["map_rss_dbm"].numpy()
            self.map_positions_m_ = tensors["map_positions_m"].numpy()
            self.sample_shape_ = tuple(meta["sample_shape"])
            self.prior_weight_ = float(meta["prior_weight"])
            self.prior_weight_scores_ = dict(meta.get("prior_weight_scores") or {})
            self.order_ = int(meta.get("order", self.config.order))
            self.n_neighbours_ = int(meta.get("n_neighbours", self.config.n_neighbours))
            self.adapt_steps_ = 0
            cfg = self.config
            self.engine_ = KNNLocalizer(cfg.k, weighted=True, floor_dbm=cfg.floor_dbm, average_points=False) \
                .fit_arrays(self.map_rss_dbm_, self.map_positions_m_)


register(MethodSpec("graph-lp", "harmonic label propagation: the support's positions spread over the target's "
                                "unlabelled fingerprints by a signal-space graph, WKNN on the propagated map",
                    GraphPropagation, ("rss",), Capabilities(trains_on_sources=False, uses_unlabelled=True),
                    {"prior": None, "prior_weights": (0.0,)}, "agml_summary"))
register(MethodSpec("maml-dg-graph", "MAML-DG adapted on the support as the prior of every unlabelled fingerprint, "
                                     "positions propagated over the target's signal graph (pull chosen by "
                                     "leave-one-point-out), WKNN on the propagated map", GraphPropagation, ("rss",),
                    Capabilities(trains_on_sources=True, uses_unlabelled=True, budget_field="prior_iterations"),
                    {"prior": "maml-dg"}, "metaloc_jsac2023",
                    {"prior_iterations": 5, "prior_weights": (0.0, 0.1), "max_folds": 3}))
#: graph-lp-tuned's candidates: the harmonic, curvature and third-order energies with 5, 10 or 20 neighbours
GRAPH_SETTINGS = tuple((order, n) for order in (1, 2, 3) for n in (5, 10, 20))
register(MethodSpec("graph-lp-tuned", "graph-lp with its graph (Laplacian order, neighbours) chosen on the historical "
                                      "environments by simulated k-shot tasks, none of it on the target",
                    GraphPropagation, ("rss",), Capabilities(trains_on_sources=True, uses_unlabelled=True),
                    {"prior": None, "prior_weights": (0.0,), "settings": GRAPH_SETTINGS}, "agml_summary",
                    {"settings": ((1, 5), (2, 5)), "tune_ks": (5,), "tune_draws": 1}))
register(MethodSpec("agml-graph", "graph-lp-tuned with AGML (meta-trained on twins of the target site, adapted "
                                  "with its unlabelled fingerprints) as the prior of every unlabelled fingerprint, "
                                  "pull chosen by leave-one-point-out", GraphPropagation, ("rss",),
                    Capabilities(trains_on_sources=True, uses_unlabelled=True, budget_field="prior_iterations",
                                 site_twins=True),
                    {"prior": "agml", "settings": GRAPH_SETTINGS, "prior_weights": (0.0, 0.1, 0.3, 1.0), "max_folds": 5,
                     "prior_params": (("max_unlabelled", 500), ("adapt_steps", 100))}, "agml_summary",
                    {"prior_iterations": 2, "prior_weights": (0.0, 0.3), "max_folds": 2, "settings": ((2, 5),),
                     "tune_ks": (5,), "tune_draws": 1,
                     "prior_params": (("max_unlabelled", 40), ("adapt_steps", 5), ("hidden", 16), ("latent", 8),
                                      ("task_nodes", 32))}))
