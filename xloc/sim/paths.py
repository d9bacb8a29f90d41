"""Propagation paths between one base station and many users, vectorised over users.

Path families (the image method for specular bounces):

* line of sight, removed when a blocker cuts it;
* first-order reflections: the BS mirrored in surface ``s``, ``b_s = b - 2 ((b - o_s) . n_s) n_s``; the bounce
  point is where the segment ``b_s -> u`` meets the surface, valid if it lies inside the rectangle and BS and
  user are on the same side; length ``|u - b_s|``;
* second-order reflections: ``b_12`` = ``b_s1`` mirrored in ``s2``; bounce points found backwards from the user;
* single-bounce scatterer paths ``b -> c -> u``.

Complex gains (amplitude of the received field relative to the transmitted, isotropic antennas):

* free space / specular:  ``a = Gamma_1 ... Gamma_k * lambda / (4 pi L)``  (Friis: ``|a|^2 = (lambda / 4 pi d)^2``)
* scatterer (bistatic radar equation): ``a = lambda sqrt(sigma) / ((4 pi)^{3/2} d_1 d_2) e^{j phi}``
* rain: ``10^(-gamma_R L / 20000)`` with ``gamma_R`` [dB/km] from ITU-R P.838-3 and ``L`` [m].

A segment is blocked when its closest approach to a blocker's axis (in the horizontal plane) is inside the
blocker's radius and below its height at that point; a user standing inside a blocker's footprint is not
blocked by it (a phone in a car), and a scatterer path never counts its own blocker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xloc.sim.geometry import SPEED_OF_LIGHT_M_S, BaseStation, Scene, Surface
from xloc.sim.rain import rain_specific_attenuation_db_per_km

__all__ = ["Paths", "solve_paths", "PATH_KINDS"]

#: Codes of ``Paths.kind``.
PATH_KINDS = {"los": 0, "reflection1": 1, "reflection2": 2, "scatter": 3}
_EPS = 1e-9


@dataclass
class Paths:
    """Paths of ``N`` users to one BS; ``P`` path slots shared by all users (invalid ones have zero gain).

    Attributes
    ----------
    delay_s : ``(N, P)`` propagation delay [s]
    gain : ``(N, P)`` complex amplitude gain (linear), 0 where invalid
    departure : ``(N, P, 3)`` unit vector from the BS along the path's first leg
    valid : ``(N, P)`` bool
    kind : ``(P,)`` codes of :data:`PATH_KINDS`
    """

    delay_s: np.ndarray
    gain: np.ndarray
    departure: np.ndarray
    valid: np.ndarray
    kind: np.ndarray


def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.linalg.norm(v, axis=-1)
    return v / np.maximum(norm, _EPS)[..., None], norm


def _mirror(points: np.ndarray, surface: Surface) -> np.ndarray:
    n = surface.normal
    return points - 2.0 * ((points - surface.origin_m) @ n)[..., None] * n


def _hit(start: np.ndarray, end: np.ndarray, surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    """Where segments ``start -> end`` cross the surface's plane, and whether that is inside the rectangle."""
    n, o = surface.normal, surface.origin_m
    direction = end - start
    denom = direction @ n
    safe = np.where(np.abs(denom) < _EPS, _EPS, denom)
    s = ((o - start) @ n) / safe
    point = start + s[..., None] * direction
    rel = point - o
    ea, eb = surface.edge_a_m, surface.edge_b_m
    alpha = (rel @ ea) / (ea @ ea)
    beta = (rel @ eb) / (eb @ eb)
    ok = (np.abs(denom) > _EPS) & (s > _EPS) & (s < 1 - _EPS)
    ok &= (alpha >= 0) & (alpha <= 1) & (beta >= 0) & (beta <= 1)
    return point, ok


def _side(points: np.ndarray, surface: Surface) -> np.ndarray:
    return np.sign((points - surface.origin_m) @ surface.normal)


def _coplanar(a: Surface, b: Surface) -> bool:
    return bool(abs(abs(a.normal @ b.normal) - 1) < 1e-9 and abs((b.origin_m - a.origin_m) @ a.normal) < 1e-6)


class _Blockers:
    def __init__(self, scene: Scene, users_m: np.ndarray) -> None:
        idx = [i for i, s in enumerate(scene.scatterers) if s.radius_m > 0 and s.height_m > 0]
        self.scatterer_index = np.asarray(idx, dtype=np.int64)
        self.center_xy = np.array([scene.scatterers[i].position_m[:2] for i in idx]).reshape(-1, 2)
        self.radius = np.array([scene.scatterers[i].radius_m for i in idx])
        self.height = np.array([scene.scatterers[i].height_m for i in idx])
        if idx:
            d = np.linalg.norm(users_m[:, None, :2] - self.center_xy[None], axis=-1)
            self.user_inside = d < self.radius  # (N, B)

    def blocked(
        self, p0: np.ndarray, p1: np.ndarray, own: np.ndarray | None = None, to_user: bool = False
    ) -> np.ndarray:
        """``(N, Q)``: are segments ``p0 -> p1`` (``(N, Q, 3)``) blocked? ``own`` ``(Q,)``: scatterer ids to skip;
        ``to_user``: the segment ends at the user, so blockers the user stands in are skipped."""
        shape = np.broadcast_shapes(p0.shape, p1.shape)[:-1]
        if self.radius.size == 0:
            return np.zeros(shape, dtype=bool)
        p0 = np.broadcast_to(p0, shape + (3,))
        d = np.broadcast_to(p1, shape + (3,)) - p0
        dxy = d[..., None, :2]  # (N, Q, 1, 2)
        rel = self.center_xy - p0[..., None, :2]  # (N, Q, B, 2)
        length2 = np.maximum((dxy**2).sum(-1), _EPS)
        t = np.clip((rel * dxy).sum(-1) / length2, 0.0, 1.0)
        dist2 = ((rel - t[..., None] * dxy) ** 2).sum(-1)
        z = p0[..., None, 2] + t * d[..., None, 2]
        hit = (dist2 < self.radius**2) & (z < self.height)
        if to_user:
            hit &= ~self.user_inside[:, None, :]
        if own is not None:
            hit &= own[:, None] != self.scatterer_index[None, :]
        return hit.any(-1)


def solve_paths(scene: Scene, bs: BaseStation, users_m: np.ndarray) -> Paths:
    """All paths from ``bs`` to each user position ``users_m`` ``(N, 3)`` [m] in ``scene``."""
    users = np.asarray(users_m, dtype=np.float64)
    n = users.shape[0]
    lam = scene.wavelength_m
    b = bs.position_m
    blockers = _Blockers(scene, users)
    u = users[:, None, :]  # (N, 1, 3)
    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []

    # Line of sight.
    dep, length = _unit(u - b)
    valid = ~blockers.blocked(b[None, None], u, to_user=True)
    groups.append((length, lam / (4 * np.pi * np.maximum(length, _EPS)) + 0j, dep, valid, PATH_KINDS["los"]))

    surfaces = scene.surfaces
    if scene.max_order >= 1 and surfaces:
        images = np.stack([_mirror(b, s) for s in surfaces])  # (S, 3)
        lengths, gains, deps, valids = [], [], [], []
        for i, s in enumerate(surfaces):
            point, ok = _hit(images[i], users, s)  # (N, 3), (N,)
            ok &= _side(users, s) == _side(b, s)
            ok &= _side(users, s) != 0
            p = point[:, None, :]
            ok &= ~blockers.blocked(b[None, None], p)[:, 0] & ~blockers.blocked(p, u, to_user=True)[:, 0]
            length = np.linalg.norm(users - images[i], axis=-1)
            lengths.append(length)
            gains.append(s.reflection_coefficient * lam / (4 * np.pi * np.maximum(length, _EPS)) + 0j)
            deps.append(_unit(point - b)[0])
            valids.append(ok)
        groups.append((np.stack(lengths, 1), np.stack(gains, 1), np.stack(deps, 1), np.stack(valids, 1),
                       PATH_KINDS["reflection1"]))
        if scene.max_order >= 2:
            lengths, gains, deps, valids = [], [], [], []
            for i, s1 in enumerate(surfaces):
                for j, s2 in enumerate(surfaces):
                    if i == j or _coplanar(s1, s2):
                        continue
                    b12 = _mirror(images[i], s2)
                    p2, ok = _hit(b12, users, s2)
                    p1, ok1 = _hit(np.broadcast_to(images[i], p2.shape), p2, s1)
                    ok &= ok1
                    ok &= _side(p2, s1) == _side(b, s1)
                    ok &= _side(p1, s2) == _side(users, s2)
                    ok &= (_side(b, s1) != 0) & (_side(users, s2) != 0)
                    q1, q2 = p1[:, None, :], p2[:, None, :]
                    ok &= ~blockers.blocked(b[None, None], q1)[:, 0]
                    ok &= ~blockers.blocked(q1, q2)[:, 0] & ~blockers.blocked(q2, u, to_user=True)[:, 0]
                    length = np.linalg.norm(users - b12, axis=-1)
                    coef = s1.reflection_coefficient * s2.reflection_coefficient
                    lengths.append(length)
                    gains.append(coef * lam / (4 * np.pi * np.maximum(length, _EPS)) + 0j)
                    deps.append(_unit(p1 - b)[0])
                    valids.append(ok)
            if lengths:
                groups.append((np.stack(lengths, 1), np.stack(gains, 1), np.stack(deps, 1), np.stack(valids, 1),
                               PATH_KINDS["reflection2"]))

    scatter_ids = np.array([i for i, s in enumerate(scene.scatterers) if s.rcs_m2 > 0], dtype=np.int64)
    if scatter_ids.size:
        pos = np.stack([scene.scatterers[i].position_m for i in scatter_ids])  # (C, 3)
        rcs = np.array([scene.scatterers[i].rcs_m2 for i in scatter_ids])
        phase = np.array([scene.scatterers[i].phase_rad for i in scatter_ids])
        dep, d1 = _unit(pos - b)  # (C, 3), (C,)
        d2 = np.linalg.norm(u - pos[None], axis=-1)  # (N, C)
        amp = lam * np.sqrt(rcs) / ((4 * np.pi) ** 1.5 * np.maximum(d1 * d2, _EPS))
        valid = ~blockers.blocked(b[None, None], pos[None], own=scatter_ids)
        valid = valid & ~blockers.blocked(pos[None], u, own=scatter_ids, to_user=True)
        groups.append((d1 + d2, amp * np.exp(1j * phase), np.broadcast_to(dep, (n,) + dep.shape), valid,
                       PATH_KINDS["scatter"]))

    length = np.concatenate([np.broadcast_to(g[0], (n, g[0].shape[1])) for g in groups], 1)
    gain = np.concatenate([np.broadcast_to(g[1], (n, g[1].shape[1])) for g in groups], 1)
    departure = np.concatenate([np.broadcast_to(g[2], (n, g[2].shape[1], 3)) for g in groups], 1)
    valid = np.concatenate([np.broadcast_to(g[3], (n, g[3].shape[1])) for g in groups], 1)
    kind = np.concatenate([np.full(g[0].shape[1], g[4]) for g in groups])
    if scene.rain_rate_mm_h > 0:
        gamma = rain_specific_attenuation_db_per_km(scene.carrier_hz, scene.rain_rate_mm_h, scene.polarization)
        gain = gain * 10.0 ** (-gamma * length / 20_000.0)
    gain = np.where(valid, gain, 0.0)
    return Paths(length / SPEED_OF_LIGHT_M_S, gain, departure, valid, kind)
