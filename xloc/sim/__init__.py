"""Synthetic environments: path-loss RSS families."""

from xloc.sim.pathloss import FAMILIES, PathLossConfig, simulate_pathloss_environment

__all__ = ["FAMILIES", "PathLossConfig", "simulate_pathloss_environment"]
