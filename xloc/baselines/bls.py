"""A broad learning system (BLS; Chen & Liu, IEEE TNNLS 2018) with incremental enhancement nodes: the engine of
the ILCL baseline (MetaLoc Table III).

Feature nodes ``Z = X W_e + b_e`` (random, linear), enhancement nodes ``H = tanh(s · [Z, 1] W_h / max)`` (random,
shrunk by ``s`` over their largest pre-activation), and output weights ``W = (λI + AᵀA)⁻¹AᵀY`` for ``A = [Z | H]``
(BLS's ridge form of the pseudo-inverse). Broad expansion adds ``m`` enhancement nodes ``H_a`` without refitting.
The BLS paper updates ``A⁺`` with Greville's formula, which is exact for the Moore-Penrose inverse but not for its
ridge form, and the block-inverse (Schur) update of ``(λI + AᵀA)⁻¹`` lost three digits per step here (new
enhancement nodes are nearly collinear with the old ones). This engine extends the Cholesky factor L of
``K = λI + AᵀA`` instead, which is backward stable:

    b = AᵀH_a,  B = L⁻¹b,  L_S = chol(λI + H_aᵀH_a − BᵀB),  L ← [[L, 0], [Bᵀ, L_S]],  W = K⁻¹ [AᵀY ; H_aᵀY],

so that the expanded system equals the ridge fit of all its nodes from scratch (a test checks it), at O(n·p·m +
p²·m) per step instead of O(n·p² + p³).

Shapes: X (n, d), Y (n, k), Z (n, groups · nodes_per_group), H (n, enhancement nodes), L (p, p) for p nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import cho_solve, solve_triangular

from xloc.errors import DataValidationError, NotFittedError

__all__ = ["BroadLearningSystem"]


class BroadLearningSystem:
    """BLS regression with incremental enhancement nodes (see the module docstring).

    Parameters
    ----------
    feature_groups, nodes_per_group : int
        Feature-node groups and nodes per group.
    enhancement_nodes : int
        Enhancement nodes of the initial fit.
    shrink : float
        ``s``: enhancement pre-activations are scaled to at most ``s`` in magnitude.
    ridge : float
        ``λ`` > 0 of the ridge solution.
    seed : int
        Seed of the random weights.
    """

    def __init__(self, feature_groups: int = 10, nodes_per_group: int = 10, enhancement_nodes: int = 100,
                 shrink: float = 0.8, ridge: float = 1e-3, seed: int = 0) -> None:
        self.feature_groups, self.nodes_per_group = feature_groups, nodes_per_group
        self.enhancement_nodes, self.shrink, self.ridge, self.seed = enhancement_nodes, shrink, ridge, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> BroadLearningSystem:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if not self.ridge > 0:
            raise DataValidationError(f"BLS: ridge must be > 0, got {self.ridge}")
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
            raise DataValidationError(f"BLS: expected X (n, d) and Y (n, k) with the same n > 0, got {x.shape}, "
                                      f"{y.shape}")
        self.rng_ = np.random.default_rng(self.seed)
        n_feat = self.feature_groups * self.nodes_per_group
        self.w_feature_ = self.rng_.uniform(-1, 1, (x.shape[1] + 1, n_feat))
        self.w_enh_ = np.zeros((n_feat + 1, 0))
        self.enh_scale_ = np.zeros(0)
        self.x_, self.y_ = x, y
        z = self._features(x)
        h = self._new_enhancement(z, self.enhancement_nodes)
        self.a_ = np.hstack([z, h])
        self.chol_ = np.linalg.cholesky(self.ridge * np.eye(self.a_.shape[1]) + self.a_.T @ self.a_)
        self.aty_ = self.a_.T @ y
        self.w_out_ = cho_solve((self.chol_, True), self.aty_)
        return self

    def add_enhancement_nodes(self, m: int) -> BroadLearningSystem:
        """Broad expansion by ``m`` enhancement nodes (block-inverse update; the feature nodes and earlier
        enhancement nodes keep their weights)."""
        if not hasattr(self, "chol_"):
            raise NotFittedError("BroadLearningSystem is not fitted: call fit(X, Y) first")
        h_a = self._new_enhancement(self._features(self.x_), m)
        b = solve_triangular(self.chol_, self.a_.T @ h_a, lower=True)
        l_s = np.linalg.cholesky(self.ridge * np.eye(m) + h_a.T @ h_a - b.T @ b)
        p = self.chol_.shape[0]
        self.chol_ = np.block([[self.chol_, np.zeros((p, m))], [b.T, l_s]])
        self.aty_ = np.vstack([self.aty_, h_a.T @ self.y_])
        self.w_out_ = cho_solve((self.chol_, True), self.aty_)
        self.a_ = np.hstack([self.a_, h_a])
        return self

    def ridge_path(self, ridges: np.ndarray | Sequence[float]) -> np.ndarray:
        """Output weights ``(len(ridges), p, k)`` of the fitted nodes for each ridge λ in ``ridges``, from one
        eigendecomposition ``AᵀA = V diag(e) Vᵀ``: ``W(λ) = V diag(1 / (e + λ)) Vᵀ AᵀY`` (the same solution as a
        fit at that λ, for choosing λ without refitting the nodes)."""
        if not hasattr(self, "a_"):
            raise NotFittedError("BroadLearningSystem is not fitted: call fit(X, Y) first")
        ridges = np.asarray(ridges, dtype=np.float64)
        if ridges.ndim != 1 or not (ridges > 0).all():
            raise DataValidationError(f"BLS: ridges must be a list of values > 0, got {ridges!r}")
        eig, v = np.linalg.eigh(self.a_.T @ self.a_)
        projected = v.T @ self.aty_  # (p, k)
        return np.einsum("pq,rq,qk->rpk", v, 1.0 / (np.maximum(eig, 0.0)[None] + ridges[:, None]), projected)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "w_out_"):
            raise NotFittedError("BroadLearningSystem is not fitted: call fit(X, Y) first")
        return self.nodes(np.asarray(x, dtype=np.float64)) @ self.w_out_

    def nodes(self, x: np.ndarray) -> np.ndarray:
        """``A = [Z | H]`` of ``x`` with every enhancement node added so far."""
        z = self._features(x)
        return np.hstack([z, self._enhancement(z, self.w_enh_, self.enh_scale_)])

    def _features(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([x, np.ones((len(x), 1))]) @ self.w_feature_

    @staticmethod
    def _enhancement(z: np.ndarray, w: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return np.tanh(np.hstack([z, np.ones((len(z), 1))]) @ w * scale)

    def _new_enhancement(self, z: np.ndarray, m: int) -> np.ndarray:
        """``m`` new random enhancement nodes (weights kept for predict), evaluated on ``z``."""
        if m < 1:
            raise DataValidationError(f"BLS: the number of enhancement nodes to add must be >= 1, got {m}")
        w = self.rng_.uniform(-1, 1, (z.shape[1] + 1, m))
        pre = np.hstack([z, np.ones((len(z), 1))]) @ w
        scale = np.full(m, self.shrink / max(float(np.abs(pre).max()), 1e-12))
        self.w_enh_ = np.hstack([self.w_enh_, w])
        self.enh_scale_ = np.concatenate([self.enh_scale_, scale])
        return np.tanh(pre * scale)
