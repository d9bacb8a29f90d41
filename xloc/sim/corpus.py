"""LWLM's pretraining corpus: unlabelled channels from many randomised street layouts and the ray-traced twins.

``build_corpus(folder, channels=200_000)`` draws one random street per chunk -- street width, building blocks
(footprint lengths, gaps, heights 6-60 m, wall losses), street furniture, parked blockers, traffic, one to four
base stations (side, position along the street, height 4-25 m, array orientation), carrier (2.4-28 GHz),
bandwidth (20-100 MHz) and radio grid (antennas x subcarriers, :data:`GRIDS`) -- and simulates every BS's channel
to users spread over it (:mod:`xloc.sim.channel`), twice: the street as drawn and with its traffic redrawn (the
second is PICL's positive view of the same user and BS). Channels are stored noise-free; pretraining draws its
own noise. Users without any path are dropped.

``add_twins(folder, root)`` appends the ray-traced collection's channels (:mod:`xloc.sim.rt_presets`) except the
scenes and splits the benchmarks test on (:data:`HELD_OUT_TWINS`, every ``test`` split): the canyon's pretraining
users with the canyon-with-cars users as their views, and the training splits of the other scenes.

Every chunk is a file written atomically and the manifest is rewritten after each, so an interrupted build
resumes where it stopped (chunk ``i`` depends on ``(seed, i)`` only) and the corpus can grow past RAM: it is
read back by :class:`~xloc.data.corpus.ChannelCorpus` a few chunks at a time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.corpus import MANIFEST, ChannelCorpus, ChunkInfo, write_chunk
from xloc.errors import DataValidationError, FileFormatError
from xloc.progress import progress as progress_bar
from xloc.sim.channel import simulate_channels
from xloc.sim.geometry import BaseStation, Scatterer, Scene, Surface, ground, wall

__all__ = ["GRIDS", "CARRIERS_HZ", "BANDWIDTHS_HZ", "HELD_OUT_TWINS", "RandomStreet", "random_street",
           "street_channels", "build_corpus", "add_twins"]

#: (antennas, subcarriers) of the simulated radios: the twins' 8 x 32, the office APs' 4 x 52, and others
GRIDS = ((8, 32), (4, 52), (16, 32), (8, 64), (4, 32))
CARRIERS_HZ = (2.4e9, 3.5e9, 5.0e9, 28e9)
BANDWIDTHS_HZ = (20e6, 40e6, 100e6)
#: twins the benchmarks evaluate on as unseen scenes or configurations: never in a pretraining corpus
HELD_OUT_TWINS = ("etoile", "florence", "patch-etoile", "patch-florence", "patch-city1", "office")
#: twins whose "pretrain" split has a same-users traffic twin (PICL views)
_TWIN_VIEWS = {"canyon": "canyon-cars"}


@dataclass(frozen=True)
class RandomStreet:
    """One drawn layout: the scene in two traffic states and the users' area ``(x0, x1, y0, y1)`` [m]."""

    scene: Scene
    scene_view: Scene
    user_area_m: tuple[float, float, float, float]
    user_height_m: float
    attrs: dict[str, Any]


def _vehicles(rng: np.random.Generator, per_100m: float, length_m: float, half_width_m: float) -> list[Scatterer]:
    lanes = np.array([-0.6, -0.2, 0.2, 0.6]) * half_width_m
    out = []
    for _ in range(rng.poisson(per_100m * length_m / 100.0)):
        truck = rng.random() < 0.25
        out.append(Scatterer([rng.uniform(0, length_m), rng.choice(lanes) + rng.normal(0, 0.3), 1.8 if truck else 1.0],
                             rcs_m2=30.0 if truck else 10.0, radius_m=2.0 if truck else 1.1,
                             height_m=3.6 if truck else 1.5, phase_rad=float(rng.uniform(0, 2 * np.pi))))
    return out


def random_street(rng: np.random.Generator, grid: tuple[int, int] | None = None) -> RandomStreet:
    """A street with every geometric and radio parameter drawn from the corpus ranges (module docstring);
    ``grid`` fixes ``(antennas, subcarriers)`` instead of drawing it from :data:`GRIDS`."""
    length = float(rng.uniform(80, 200))
    half_width = float(rng.uniform(6, 20))
    surfaces: list[Surface] = []
    for side in (-1.0, 1.0):
        x = -20.0 + rng.uniform(0, 5)
        while x < length + 20.0:
            end = min(x + rng.uniform(10, 50), length + 20.0)
            surfaces.append(wall((x, side * half_width), (end, side * half_width), rng.uniform(6, 60),
                                 rng.uniform(3, 12), name=f"building{len(surfaces)}"))
            x = end + rng.uniform(2, 12)
    surfaces.append(ground((-40.0, length + 40.0), (-half_width - 3, half_width + 3),
                           reflection_loss_db=rng.uniform(5, 12)))
    furniture = [Scatterer([rng.uniform(0, length), s * rng.uniform(0.7, 0.95) * half_width, rng.uniform(2, 6)],
                           rcs_m2=float(rng.uniform(0.5, 5)), phase_rad=float(rng.uniform(0, 2 * np.pi)))
                 for s in rng.choice([-1.0, 1.0], int(rng.integers(0, 21)))]
    blockers = [Scatterer([rng.uniform(0, length), s * rng.uniform(0.3, 0.8) * half_width, 2.5],
                          rcs_m2=float(rng.uniform(5, 20)), radius_m=float(rng.uniform(1.5, 3.5)), height_m=8.0,
                          phase_rad=float(rng.uniform(0, 2 * np.pi)))
                 for s in rng.choice([-1.0, 1.0], int(rng.integers(0, 5)))]
    drawn = GRIDS[int(rng.integers(len(GRIDS)))]
    antennas, subcarriers = drawn if grid is None else grid
    carrier = float(rng.choice(CARRIERS_HZ))
    bandwidth = float(rng.choice(BANDWIDTHS_HZ))
    stations = []
    for _ in range(int(rng.integers(1, 5))):
        side = float(rng.choice([-1.0, 1.0]))
        facing = np.pi if side > 0 else 0.0  # broadside across the street
        stations.append(BaseStation([rng.uniform(0, length), side * (half_width - 1.0), rng.uniform(4, 25)],
                                    orientation_rad=facing + float(np.deg2rad(rng.uniform(-30, 30))),
                                    n_horizontal=antennas))
    traffic = float(rng.uniform(0, 40))
    cars, cars_view = (_vehicles(rng, traffic, length, half_width) for _ in range(2))
    attrs = {"length_m": length, "half_width_m": half_width, "n_bs": len(stations), "carrier_hz": carrier,
             "bandwidth_hz": bandwidth, "vehicles_per_100m": traffic, "n_surfaces": len(surfaces),
             "n_scatterers": len(furniture) + len(blockers)}
    scene = Scene(carrier, bandwidth, subcarriers, tuple(stations), tuple(surfaces),
                  tuple(furniture + blockers + cars))
    scene_view = Scene(carrier, bandwidth, subcarriers, tuple(stations), tuple(surfaces),
                       tuple(furniture + blockers + cars_view))
    area = (5.0, length - 5.0, -half_width + 1.0, half_width - 1.0)
    return RandomStreet(scene, scene_view, area, float(rng.uniform(1.0, 2.0)), attrs)


def _flat(csi: np.ndarray) -> np.ndarray:
    return csi.reshape(-1, *csi.shape[2:])


def street_channels(street: RandomStreet, n_users: int, rng: np.random.Generator, *, views: bool = True
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Channels ``(n, M, K)`` of every BS to ``n_users`` users drawn uniformly over the street's user area and, with
    ``views``, the same links in the redrawn traffic (PICL's positives); links that no path reaches (in either
    state) are dropped."""
    x0, x1, y0, y1 = street.user_area_m
    xy = rng.uniform([x0, y0], [x1, y1], size=(n_users, 2))
    users = np.column_stack([xy, np.full(n_users, street.user_height_m)])
    csi = _flat(simulate_channels(street.scene, users).csi)
    reached = (np.abs(csi) > 0).any(axis=(1, 2))
    if not views:
        return csi[reached], None
    view = _flat(simulate_channels(street.scene_view, users).csi)
    reached &= (np.abs(view) > 0).any(axis=(1, 2))
    return csi[reached], view[reached]


def _existing(folder: Path) -> dict[str, ChunkInfo]:
    if not (folder / MANIFEST).is_file():
        return {}
    try:  # the chunks an earlier run finished (a chunk file is written before its manifest entry)
        return {c.file: c for c in ChannelCorpus.read_manifest(folder) if (folder / c.file).is_file()}
    except FileFormatError:  # not a manifest this version reads: chunks are made again
        return {}


def build_corpus(folder: str | os.PathLike[str], channels: int = 200_000, *, chunk_channels: int = 2048,
                 seed: int = 0, progress: bool = False) -> ChannelCorpus:
    """Simulate random streets into ``folder`` until it holds at least ``channels`` channels, one street per
    chunk of about ``chunk_channels`` (``users = chunk_channels / n_bs``). Finished chunks are kept: a second call
    resumes, and a call with a larger ``channels`` grows the corpus."""
    if channels < 1 or chunk_channels < 8:
        raise DataValidationError(f"channels must be >= 1 and chunk_channels >= 8, got {channels}, {chunk_channels}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = _existing(folder)
    chunks = [c for c in done.values() if c.source != "geometric"]
    have = index = ready = 0
    while (c := done.get(f"chunk-{ready:06d}.h5")) is not None and c.source == "geometric" and have < channels:
        have, ready = have + c.n, ready + 1  # finished by an earlier run: counted, not shown as this run's rate
    have = 0
    t0 = time.perf_counter()
    start = sum(done[f"chunk-{i:06d}.h5"].n for i in range(ready))
    with progress_bar("corpus channels", channels, enabled=progress, start=min(start, channels)) as bar:
        while have < channels:
            name = f"chunk-{index:06d}.h5"
            info = done.get(name)
            if info is None or info.source != "geometric":
                street = random_street(np.random.default_rng([seed, 71, index]))
                csi, view = street_channels(street, max(1, chunk_channels // street.attrs["n_bs"]),
                                            np.random.default_rng([seed, 72, index]))
                info = write_chunk(folder, name, csi, view, source="geometric",
                                   attrs={**street.attrs, "seed": seed, "index": index})
                chunks = [c for c in chunks if c.file != name] + [info]
                ChannelCorpus.write_manifest(folder, sorted(chunks, key=lambda c: c.file), seed=seed,
                                             build_s=time.perf_counter() - t0)
            elif info not in chunks:
                chunks.append(info)
            if index >= ready:
                bar.advance(min(info.n, channels - have))
            have += info.n
            index += 1
    ChannelCorpus.write_manifest(folder, sorted(chunks, key=lambda c: c.file), seed=seed,
                                 build_s=time.perf_counter() - t0)
    return ChannelCorpus.open(folder)


def add_twins(folder: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, *,
              chunk_channels: int = 2048, exclude: tuple[str, ...] = HELD_OUT_TWINS) -> ChannelCorpus:
    """Append the ray-traced collection's channels (every preset but ``exclude``; no ``test`` split) to the corpus
    in ``folder`` as chunks ``twin-<preset>-<split>-<i>.h5``; chunks already there are kept."""
    from xloc.sim.rt_presets import PATCH_PRESETS, RT_PRESETS, load_twin, twins_dir

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = list(_existing(folder).values())
    have = {c.file for c in chunks}
    found = 0
    for name in sorted({**RT_PRESETS, **PATCH_PRESETS}):
        if name in exclude or name in _TWIN_VIEWS.values() or not (twins_dir(root) / f"{name}.h5").is_file():
            continue
        found += 1
        preset = {**RT_PRESETS, **PATCH_PRESETS}[name]
        split = "pretrain" if getattr(preset, "pretrain", False) else "train"
        envs = load_twin(name, split, root)
        views = load_twin(_TWIN_VIEWS[name], split, root) if name in _TWIN_VIEWS else None
        for e, (env_name, fp) in enumerate(envs.items()):
            csi = _flat(fp.measurements)
            view = None if views is None else _flat(list(views.values())[e].measurements)
            reached = (np.abs(csi) > 0).any(axis=(1, 2))
            if view is not None:
                reached &= (np.abs(view) > 0).any(axis=(1, 2))
            csi = csi[reached]
            view = None if view is None else view[reached]
            for i, start in enumerate(range(0, len(csi), chunk_channels)):
                file = f"twin-{name}-{e}-{i:04d}.h5"
                if file in have:
                    continue
                part = slice(start, start + chunk_channels)
                radio = fp.environment
                info = write_chunk(folder, file, csi[part], None if view is None else view[part],
                                   source="ray-traced", attrs={"preset": name, "environment": env_name, "split": split,
                                                               "carrier_hz": float(radio.frequency_hz or 0.0),
                                                               "bandwidth_hz": float(radio.bandwidth_hz or 0.0)})
                chunks.append(info)
                have.add(file)
                ChannelCorpus.write_manifest(folder, sorted(chunks, key=lambda c: c.file))
    if not found:
        raise DataValidationError(f"no ray-traced twins found in {twins_dir(root)}: generate them with `make twins`")
    ChannelCorpus.write_manifest(folder, sorted(chunks, key=lambda c: c.file))
    return ChannelCorpus.open(folder)
