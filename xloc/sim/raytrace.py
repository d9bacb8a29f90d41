"""Ray-traced CSI with Sionna RT (optional extra ``xloc[raytrace]``): real 3-D scenes as digital twins.

Base stations with a horizontal half-wavelength ULA (broadside along ``yaw_deg``) serve single-antenna users. The
stored CSI and labels follow xloc's array convention (:class:`~xloc.sim.geometry.BaseStation` with
``orientation_rad = yaw - pi/2``): elements numbered along broadside - 90 deg, ``aoa_rad`` measured from the
broadside towards that axis, so model-based estimators and models trained on the geometric simulator read
ray-traced CSI the same way. Paths are solved in chunks of users
(``PathSolver``, ``max_depth`` interactions, synthetic arrays), the frequency response is taken at
``n_subcarriers`` subcarriers spanning ``bandwidth_hz``, and per user and BS the ground truth is stored: LoS flag,
first-path delay [s] and azimuth of departure from the array broadside [rad] (``aoa_rad``),
elevation [rad], path count and mean power [dB]. Users without any path are kept (zero CSI, ``path_count`` 0).

With ``cache_dir``, every finished chunk is written atomically there and an interrupted run resumes from them.
The CPU back-end needs LLVM >= 16 (Debian 12: ``apt-get install -y libllvm19``); its path is found automatically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xloc.data.environment import EnvironmentMeta
from xloc.data.fingerprints import Fingerprints
from xloc.errors import DataValidationError
from xloc.progress import progress as progress_bar

__all__ = ["RTBaseStation", "RTConfig", "require_sionna", "simulate_raytraced", "xloc_scene", "INSTALL_HINT"]

SPEED_OF_LIGHT_M_S = 299_792_458.0
LLVM_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1", "/usr/lib/x86_64-linux-gnu/libLLVM-19.so",
                   "/usr/lib/aarch64-linux-gnu/libLLVM.so.19.1")
MIN_LLVM = (16,)
INSTALL_HINT = ("Sionna RT is not usable here. Install the extra: pip install 'xloc[raytrace]'; on Debian 12 the CPU "
                "back-end also needs LLVM 19: apt-get install -y libllvm19 (xloc then sets DRJIT_LIBLLVM_PATH).")


def require_sionna() -> Any:
    """``sionna.rt``, or a :class:`DataValidationError` saying how to install it."""
    if "DRJIT_LIBLLVM_PATH" not in os.environ:
        found = next((p for p in LLVM_CANDIDATES if Path(p).is_file()), None)
        if found:
            os.environ["DRJIT_LIBLLVM_PATH"] = found
    try:
        import drjit
        import sionna.rt as rt
    except Exception as exc:  # ImportError, or drjit failing to load its LLVM back-end
        raise DataValidationError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
    # An older LLVM (Debian 12's 14 and 15) loads, then aborts the process inside the path solver: refuse it here.
    llvm = tuple(drjit.detail.llvm_version())
    if llvm < MIN_LLVM:
        raise DataValidationError(f"{INSTALL_HINT} (drjit loaded LLVM {'.'.join(map(str, llvm))}; it needs "
                                  f">= {MIN_LLVM[0]}; set DRJIT_LIBLLVM_PATH to a newer libLLVM)")
    return rt


@dataclass(frozen=True)
class RTBaseStation:
    """A BS: array centre ``position_m`` (3,) [m], array yaw [deg] (0: broadside along +x), ULA size."""

    position_m: tuple[float, float, float]
    yaw_deg: float = 0.0
    n_antennas: int = 8

    def __post_init__(self) -> None:
        position = tuple(float(v) for v in self.position_m)  # numpy scalars would upset Mitsuba
        if len(position) != 3 or not np.isfinite(position).all():
            raise DataValidationError(f"RTBaseStation.position_m must be 3 finite metres, got {self.position_m}")
        if self.n_antennas < 1:
            raise DataValidationError(f"RTBaseStation.n_antennas must be >= 1, got {self.n_antennas}")
        object.__setattr__(self, "position_m", position)
        object.__setattr__(self, "yaw_deg", float(self.yaw_deg))


@dataclass(frozen=True)
class RTConfig:
    """Scene (a built-in name such as ``simple_street_canyon``, ``"empty"``, or a Mitsuba XML path) and solver."""

    scene: str = "simple_street_canyon"
    carrier_hz: float = 3.5e9
    bandwidth_hz: float = 40e6
    n_subcarriers: int = 32
    max_depth: int = 3
    #: receivers per solver call (and per cached chunk)
    chunk: int = 250
    #: rays shot per transmitter (Sionna RT's default is 10^6)
    samples_per_src: int = 1_000_000
    #: one ray set per array, element phases from the plane-wave model (False: trace every element)
    synthetic_array: bool = True

    def __post_init__(self) -> None:
        if self.carrier_hz <= 0 or self.bandwidth_hz <= 0 or self.n_subcarriers < 1 or self.chunk < 1:
            raise DataValidationError("carrier_hz, bandwidth_hz > 0 and n_subcarriers, chunk >= 1 required")
        if self.samples_per_src < 1000:
            raise DataValidationError(f"samples_per_src must be >= 1000, got {self.samples_per_src}")
        if self.max_depth < 0:
            raise DataValidationError(f"max_depth must be >= 0, got {self.max_depth}")


def _load_scene(rt: Any, name: str) -> Any:
    if name == "empty":
        return rt.load_scene()
    if Path(name).suffix == ".xml":
        if not Path(name).is_file():
            raise DataValidationError(f"scene file {name} does not exist")
        return rt.load_scene(name)
    if not hasattr(rt.scene, name):
        raise DataValidationError(f"unknown Sionna RT scene {name!r}; built-in: "
                                  f"{sorted(n for n in dir(rt.scene) if not n.startswith('_'))}")
    return rt.load_scene(getattr(rt.scene, name))


def _solve_chunk(rt: Any, cfg: RTConfig, stations: Sequence[RTBaseStation], users: np.ndarray) -> dict[str, Any]:
    scene = _load_scene(rt, cfg.scene)
    scene.frequency = cfg.carrier_hz
    n_ant = stations[0].n_antennas
    scene.tx_array = rt.PlanarArray(num_rows=1, num_cols=n_ant, vertical_spacing=0.5, horizontal_spacing=0.5,
                                    pattern="iso", polarization="V")
    scene.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    for j, bs in enumerate(stations):
        scene.add(rt.Transmitter(f"bs{j}", position=list(bs.position_m),
                                 orientation=[float(np.deg2rad(bs.yaw_deg)), 0.0, 0.0]))
    for i, u in enumerate(users):
        scene.add(rt.Receiver(f"u{i}", position=[float(v) for v in u]))
    paths = rt.PathSolver()(scene, max_depth=cfg.max_depth, synthetic_array=cfg.synthetic_array,
                            samples_per_src=cfg.samples_per_src)
    freqs = rt.subcarrier_frequencies(cfg.n_subcarriers, cfg.bandwidth_hz / cfg.n_subcarriers)
    # absolute delays: Sionna's default moves each link's first path to tau = 0, which erases the ToA
    h = paths.cfr(frequencies=freqs, normalize_delays=False, out_type="numpy")  # (rx, rx_ant, tx, tx_ant, t, f)
    # (users, bs, antennas, subcarriers); Sionna numbers the elements along broadside + 90 deg, xloc's ULA
    # (geometry.BaseStation) along broadside - 90 deg: reverse them so xloc's steering model holds
    csi = np.asarray(h)[:, 0, :, ::-1, 0, :].astype(np.complex64)
    # (rx, tx, paths); a traced array has (rx, rx_ant, tx, tx_ant, paths): its truth is the centre element's
    mid = n_ant // 2
    per_link = (lambda a: np.asarray(a)) if cfg.synthetic_array else (lambda a: np.asarray(a)[:, 0, :, mid])
    valid = per_link(paths.valid).astype(bool)
    tau = np.where(valid, per_link(paths.tau), np.inf)
    first = np.argmin(tau, axis=-1)
    has = np.isfinite(np.take_along_axis(tau, first[..., None], -1)[..., 0])
    pick = lambda a: np.take_along_axis(a, first[..., None], -1)[..., 0]  # noqa: E731
    yaw = np.deg2rad(np.array([bs.yaw_deg for bs in stations]))[None, :]
    # xloc's aoa_rad: from the broadside towards the element axis (clockwise seen from above)
    aoa = (yaw - pick(per_link(paths.phi_t)) + np.pi) % (2 * np.pi) - np.pi
    interactions = np.asarray(paths.interactions)  # (depth, rx, tx, paths); 0 = none
    if not cfg.synthetic_array and interactions.size:
        interactions = interactions[:, :, 0, :, mid]
    los_path = valid & (interactions == 0).all(axis=0) if interactions.size else valid
    power = (np.abs(csi) ** 2).mean(axis=(2, 3))
    return {
        "csi": csi, "los": los_path.any(-1), "toa_s": np.where(has, pick(tau), np.nan),
        "aoa_rad": np.where(has, aoa, np.nan),
        "elevation_rad": np.where(has, np.pi / 2 - pick(per_link(paths.theta_t)), np.nan),
        "path_count": valid.sum(-1).astype(np.int64), "power_db": 10 * np.log10(np.maximum(power, 1e-30)),
    }


def _save_atomic(path: Path, arrays: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def simulate_raytraced(cfg: RTConfig, stations: Sequence[RTBaseStation], users_m: np.ndarray, *, name: str,
                       cache_dir: str | Path | None = None, progress: bool = False,
                       origin_m: tuple[float, float] = (0.0, 0.0)) -> Fingerprints:
    """CSI ``(n, bs, antennas, subcarriers)`` and ground truth of users at ``users_m`` ``(n, 3)`` [m] (scene frame).

    The stored user and BS positions are shifted by ``-origin_m`` in x and y (the dataset's frame; heights kept).
    """
    users = np.asarray(users_m, dtype=np.float64)
    if users.ndim != 2 or users.shape[1] != 3 or not np.isfinite(users).all() or len(users) == 0:
        raise DataValidationError(f"users_m must be finite (n, 3) metres with n >= 1, got {users.shape}")
    if not stations or len({bs.n_antennas for bs in stations}) != 1:
        raise DataValidationError("give at least one base station; all with the same n_antennas")
    rt = require_sionna()
    cache = None if cache_dir is None else Path(cache_dir)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, Any]] = []
    starts = range(0, len(users), cfg.chunk)
    with progress_bar(f"ray tracing {cfg.scene}", len(users), enabled=progress) as bar:
        for start in starts:
            chunk = users[start : start + cfg.chunk]
            path = None if cache is None else cache / f"chunk-{start:08d}-{len(chunk)}.npz"
            if path is not None and path.is_file():
                with np.load(path, allow_pickle=False) as f:
                    part = {k: f[k] for k in f.files}
            else:
                part = _solve_chunk(rt, cfg, stations, chunk)
                if path is not None:
                    _save_atomic(path, part)
            parts.append(part)
            bar.advance(len(chunk))
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    import drjit
    import mitsuba

    attrs: dict[str, str | float | int | bool] = {
        "simulator": "sionna-rt", "scene": cfg.scene, "max_depth": cfg.max_depth, "n_subcarriers": cfg.n_subcarriers,
        "samples_per_src": cfg.samples_per_src, "synthetic_array": cfg.synthetic_array,
        "n_antennas": stations[0].n_antennas, "sionna_rt": str(getattr(rt, "__version__", "?")),
        "mitsuba": str(getattr(mitsuba, "__version__", "?")), "drjit": str(getattr(drjit, "__version__", "?")),
        "bs_yaw_deg": ",".join(f"{bs.yaw_deg:g}" for bs in stations),
        "scene_origin_m": f"{origin_m[0]:g},{origin_m[1]:g}", "array_convention": "xloc", "delays": "absolute",
    }
    shift = np.array([origin_m[0], origin_m[1], 0.0])
    meta = EnvironmentMeta(name=name, kind="csi", ap_ids=tuple(f"BS{j + 1}" for j in range(len(stations))),
                           ap_positions_m=np.array([bs.position_m for bs in stations], dtype=np.float64) - shift,
                           frequency_hz=cfg.carrier_hz, bandwidth_hz=cfg.bandwidth_hz, attrs=attrs)
    labels = {k: v for k, v in data.items() if k != "csi"}
    return Fingerprints(meta, data["csi"], users - shift, np.arange(len(users)), labels=labels)


def xloc_scene(fp: Fingerprints) -> Any:
    """The base stations of a ray-traced set as an xloc :class:`~xloc.sim.geometry.Scene` (no surfaces): what
    model-based estimators need (positions in the set's frame, array axis, subcarrier grid)."""
    from xloc.sim.geometry import BaseStation, Scene

    meta = fp.environment
    yaws = [float(v) for v in str(meta.attrs["bs_yaw_deg"]).split(",")]
    n_ant = int(meta.attrs["n_antennas"])
    assert meta.ap_positions_m is not None and meta.frequency_hz and meta.bandwidth_hz
    stations = [BaseStation(tuple(p), np.deg2rad(yaw) - np.pi / 2, n_ant) for p, yaw in zip(meta.ap_positions_m, yaws,
                                                                                        strict=True)]
    return Scene(meta.frequency_hz, meta.bandwidth_hz, int(meta.attrs["n_subcarriers"]), tuple(stations))
