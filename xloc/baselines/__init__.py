"""Classical baselines: KNN and WKNN fingerprinting."""

from xloc.baselines.knn import KNNLocalizer

__all__ = ["KNNLocalizer"]
