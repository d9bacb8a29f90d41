"""Pictures of a simulated scenario: the layout with users coloured by received power, one user's
power-delay profile, and an example CSI image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xloc.data.fingerprints import Fingerprints
from xloc.figures import plt, save_figure
from xloc.sim.geometry import Scene

__all__ = ["plot_scenario", "power_delay_profile"]


def power_delay_profile(csi_bs: np.ndarray, bandwidth_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Delay axis [s] and power [dB] of ``|IFFT_k H[m, k]|^2`` averaged over antennas, for ``csi_bs`` ``(M, K)``."""
    taps = np.fft.ifft(csi_bs, axis=-1)
    power = (np.abs(taps) ** 2).mean(0)
    delay = np.arange(csi_bs.shape[-1]) / bandwidth_hz
    return delay, 10 * np.log10(np.maximum(power, 1e-30))


def _draw_scene(ax: plt.Axes, scene: Scene) -> None:
    for s in scene.surfaces:
        if abs(s.normal[2]) > 0.5:  # ground / ceiling
            continue
        a, b = s.origin_m, s.origin_m + s.edge_a_m
        ax.plot([a[0], b[0]], [a[1], b[1]], color="0.3", lw=2)
    for c in scene.scatterers:
        if c.radius_m > 0 and c.height_m > 0:
            ax.add_patch(plt.Circle(tuple(c.position_m[:2]), c.radius_m, color="tab:red", alpha=0.5))
        else:
            ax.plot(*c.position_m[:2], marker="x", color="tab:orange", ms=5)
    for i, bs in enumerate(scene.base_stations):
        p = bs.position_m
        ax.plot(*p[:2], marker="^", color="k", ms=10)
        ax.annotate(f"BS{i + 1}", (float(p[0]), float(p[1])), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if bs.n_antennas > 1:  # a single antenna has no orientation worth drawing
            ax.arrow(p[0], p[1], *(3 * bs.broadside[:2]), head_width=0.8, color="k")


def plot_scenario(scene: Scene, fingerprints: Fingerprints, path: Path, *, user: int = 0) -> Path:
    """Layout (walls grey, blockers red, scatterers orange, BS triangles with broadside arrows, users coloured
    by mean received power gain [dB]) and, for CSI, user ``user``'s power-delay profile; for CSI images, the
    user's image."""
    is_csi = fingerprints.environment.kind == "csi"
    ncols = 3 if is_csi else 2
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.6),
                             gridspec_kw={"width_ratios": [1.6] + [1] * (ncols - 1)})
    ax, ax2 = axes[0], axes[1]
    _draw_scene(ax, scene)
    pos = fingerprints.positions_m
    power = fingerprints.labels.get("power_db")
    if power is not None:
        sc = ax.scatter(pos[:, 0], pos[:, 1], c=power.max(1), s=4, cmap="viridis")
        fig.colorbar(sc, ax=ax, label="max received power gain over BSs [dB]")
    else:
        ax.scatter(pos[:, 0], pos[:, 1], s=4)
    ax.plot(*pos[user, :2], marker="*", color="magenta", ms=14)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(f"{fingerprints.name}: layout and users")
    meas = fingerprints.measurements
    if fingerprints.environment.kind == "csi":
        bw = fingerprints.environment.bandwidth_hz or 1.0
        for b in range(meas.shape[1]):
            delay, pdp = power_delay_profile(meas[user, b], bw)
            ax2.plot(delay * 1e9, pdp, marker="o", ms=3, label=f"BS{b + 1}")
        toa = fingerprints.labels.get("toa_s")
        if toa is not None and np.isfinite(toa[user, 0]):
            ax2.axvline(toa[user, 0] * 1e9, color="grey", ls=":", label="true first-path ToA (BS1)")
        ax2.set_xlabel("delay [ns]")
        ax2.set_ylabel("power [dB]")
        ax2.set_title("power-delay profile of the starred user")
        ax2.legend(fontsize=8)
        amp = 20 * np.log10(np.maximum(np.abs(meas[user, 0]), 1e-30))
        im = axes[2].imshow(amp, aspect="auto", cmap="viridis")
        fig.colorbar(im, ax=axes[2], label="|H| [dB]")
        axes[2].set_title("CSI amplitude of the starred user (BS1)")
        axes[2].set_xlabel("subcarrier")
        axes[2].set_ylabel("antenna")
    else:
        img = meas[user]  # (channels, rows, cols)
        ax2.imshow(np.concatenate(list(img), axis=1), aspect="auto", cmap="viridis", vmin=0, vmax=255)
        ax2.set_title("CSI image of the starred point (AP1 | AP2 | AP3)")
        ax2.set_xlabel("subcarrier (per AP)")
        ax2.set_ylabel("packet")
    return save_figure(fig, path, dpi=100)
