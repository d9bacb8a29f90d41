"""Training paradigms behind one estimator API."""

from xloc.learn.base import Localizer

__all__ = ["Localizer"]
