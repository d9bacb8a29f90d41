"""N-way k-shot classification tasks on CSI images (MetaLoc sections II-C2, IV-B, V-B).

Classes are reference points (RPs). A task has ``n_way`` RPs with ``k_support`` support and ``k_query`` query
images each; labels ``0..n_way-1`` are assigned in a random order per task. At meta-test the ``n_way`` RPs of a
test image are the ones most similar to it by histogram intersection (eq. (2), mean over the RP's images), so
training tasks are drawn the same way: a random anchor image and its ``n_way`` most similar RPs (our choice; the
paper does not say how training tasks pick their RPs).
"""

from __future__ import annotations

import numpy as np

from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError
from xloc.features.histogram import histogram_intersection, image_histograms

__all__ = ["ImageTaskSampler", "nearest_rps", "normalise_pixels"]


def normalise_pixels(images: np.ndarray) -> np.ndarray:
    """CNN input: pixels 0-255 mapped to roughly [-2, 2] (``(x - 128) / 64``), float32."""
    return ((np.asarray(images, dtype=np.float32) - 128.0) / 64.0).astype(np.float32)


def nearest_rps(
    query_hist: np.ndarray, rp_hist: np.ndarray, rp_of_image: np.ndarray, n_rps: int, n_way: int
) -> np.ndarray:
    """Indices ``(n, n_way)`` of the RPs with the largest mean histogram intersection with each query image."""
    hi = histogram_intersection(query_hist, rp_hist).astype(np.float64)
    sums = np.zeros((hi.shape[0], n_rps))
    np.add.at(sums.T, rp_of_image, hi.T)
    counts = np.bincount(rp_of_image, minlength=n_rps)
    mean = sums / np.maximum(counts, 1)
    return np.argsort(-mean, axis=1, kind="stable")[:, :n_way]


class ImageTaskSampler:
    """Draws equally shaped N-way k-shot tasks from one environment's CSI images."""

    def __init__(self, env: Fingerprints, *, n_way: int = 10, k_support: int = 3, k_query: int = 5) -> None:
        if env.environment.kind != "csi_image":
            raise DataValidationError(
                f"environment {env.name!r}: image tasks need CSI images, not {env.environment.kind}"
            )
        self.env = env
        self.n_way, self.k_support, self.k_query = n_way, k_support, k_query
        self.rp_ids, self.rp_of_image = np.unique(env.point_ids, return_inverse=True)
        counts = np.bincount(self.rp_of_image)
        if self.rp_ids.size < n_way:
            raise DataValidationError(
                f"environment {env.name!r} has {self.rp_ids.size} RPs; {n_way}-way tasks need more"
            )
        if counts.min() < k_support + k_query:
            raise DataValidationError(
                f"environment {env.name!r}: every RP needs {k_support + k_query} images for k_support + k_query, "
                f"some have {counts.min()}"
            )
        self.images_of_rp = [np.flatnonzero(self.rp_of_image == r) for r in range(self.rp_ids.size)]
        self.hist = image_histograms(env.measurements)
        self.images = normalise_pixels(env.measurements)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``x_s (N k_s, C, H, W)``, ``y_s (N k_s,)``, ``x_q (N k_q, C, H, W)``, ``y_q (N k_q,)``."""
        return self.sample_with_rps(rng)[:4]

    def sample_with_rps(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A task and the RP ids ``(N,)`` its labels stand for."""
        anchor = int(rng.integers(len(self.images)))
        rps = nearest_rps(self.hist[anchor : anchor + 1], self.hist, self.rp_of_image, self.rp_ids.size, self.n_way)[0]
        rps = rng.permutation(rps)  # label l belongs to rps[l]
        sup, qry = [], []
        for rp in rps:
            pick = rng.choice(self.images_of_rp[rp], size=self.k_support + self.k_query, replace=False)
            sup.append(pick[: self.k_support])
            qry.append(pick[self.k_support :])
        s, q = np.concatenate(sup), np.concatenate(qry)
        labels = np.arange(self.n_way)
        return (self.images[s], np.repeat(labels, self.k_support), self.images[q], np.repeat(labels, self.k_query),
                self.rp_ids[rps])

    def histogram_features(self, rng: np.random.Generator, n: int = 256) -> np.ndarray:
        """Normalised histograms of up to ``n`` random images (MAML-TS's MMD features)."""
        idx = rng.permutation(len(self.hist))[:n]
        return (self.hist[idx] / self.hist[idx].sum(1, keepdims=True)).astype(np.float64)
