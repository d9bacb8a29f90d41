"""Baselines every method is measured against: KNN / WKNN / histogram fingerprinting, an MLP regressor, the CSI
networks of ALLoc's and LWLM's papers (CNN, AD_CNN, MFCNet, multi-task, task CNN) and the model-based estimators."""

from xloc.baselines.knn import KNNLocalizer

__all__ = ["KNNLocalizer"]
