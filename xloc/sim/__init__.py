"""Synthetic environments: path-loss RSS families and a geometric multipath MIMO-OFDM CSI simulator."""

from xloc.sim.channel import ChannelData, simulate_channels
from xloc.sim.geometry import BaseStation, Scatterer, Scene, Surface, ground, wall
from xloc.sim.impairments import add_awgn, coarse_locations, multiplicative_disturbance
from xloc.sim.pathloss import FAMILIES, PathLossConfig, simulate_pathloss_environment
from xloc.sim.presets import SCENARIOS, scenario_scene, simulate_scenario

__all__ = [
    "FAMILIES",
    "PathLossConfig",
    "simulate_pathloss_environment",
    "BaseStation",
    "Scatterer",
    "Scene",
    "Surface",
    "ground",
    "wall",
    "ChannelData",
    "simulate_channels",
    "add_awgn",
    "coarse_locations",
    "multiplicative_disturbance",
    "SCENARIOS",
    "scenario_scene",
    "simulate_scenario",
]
