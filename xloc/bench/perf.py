"""Performance against peers and the limits of the machine (``xloc bench --protocol perf``).

* :func:`peak_flops` -- the machine's float32 matmul rate (the roof the training loops are measured against).
* :func:`knn_vs_sklearn` -- WKNN prediction throughput of :class:`~xloc.baselines.knn.KNNLocalizer` against
  scikit-learn's ``KNeighborsRegressor`` (brute force, distance weights) on the same radio map and queries, with
  a check that both predict the same positions.
* :func:`learn2learn_status` -- whether learn2learn's MAML can run here (it is the peer for MetaLoc's meta-training).
* :func:`~xloc.bench.maml_peers.maml_vs_peers` -- MetaLoc's vmapped second-order MAML against ``higher`` and
  ``torchopt``: meta-gradient tasks/s and the equality of the gradients.
* :func:`training_flop_fraction` -- FLOPs of one training step (counted by ``torch.utils.flop_counter``) times
  steps per second, as a fraction of the peak, for MetaLoc's meta-training, ALLoc's and LWLM's training steps.
* :func:`scaling` -- wall time and peak memory of KNN prediction against the number of reference fingerprints and
  of the CSI simulator against the number of users, with log-log fits ``t ~ a n^b`` and the largest n that fits
  in the machine's memory by the fitted memory law.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xloc.bench.maml_peers import maml_vs_peers
from xloc.bench.registry import BenchContext
from xloc.bench.report import markdown_images
from xloc.eval.results import markdown_table
from xloc.figures import plt, save_figure

__all__ = ["peak_flops", "knn_vs_sklearn", "learn2learn_status", "training_flop_fraction", "profile_summary",
           "scaling", "run_perf"]

MACHINE_MEMORY_BYTES = 24 * 2**30


def _best_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return float(best)


def peak_flops(n: int = 2048) -> dict[str, Any]:
    """float32 matmul GFLOP/s with all of torch's threads (``2 n^3`` FLOPs per product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = _best_time(lambda: a @ b)
    return {"protocol": "perf", "method": "matmul", "metric": "peak_gflops", "value": 2 * n**3 / seconds / 1e9,
            "unit": "GFLOP/s", "setting": f"float32 {n}x{n} @ {n}x{n}, {torch.get_num_threads()} threads"}


def knn_vs_sklearn(n_ref: int = 5000, n_query: int = 2000, n_ap: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Queries/s of xloc's WKNN and scikit-learn's on one synthetic radio map (same K = 5, same weights)."""
    from xloc.baselines.knn import KNNLocalizer

    rng = np.random.default_rng(seed)
    ref = rng.uniform(-100, -30, (n_ref, n_ap))
    pos = rng.uniform(0, 50, (n_ref, 2))
    q = ref[rng.integers(0, n_ref, n_query)] + rng.normal(0, 3, (n_query, n_ap))
    ours = KNNLocalizer(5, weighted=True, eps=1e-12).fit_arrays(ref, pos)
    t_ours = _best_time(lambda: ours.predict(q), 3)
    row = {"protocol": "perf", "method": "wknn", "metric": "queries_per_s", "value": n_query / t_ours,
           "unit": "queries/s", "setting": f"{n_ref} references x {n_ap} APs, {n_query} queries, K = 5"}
    try:
        from sklearn.neighbors import KNeighborsRegressor
    except ImportError:
        return [{**row, "baseline": "scikit-learn not installed"}]
    sk = KNeighborsRegressor(n_neighbors=5, weights="distance", algorithm="brute").fit(ref, pos)
    t_sk = _best_time(lambda: sk.predict(q), 3)
    same = float(np.abs(ours.predict(q) - sk.predict(q)).max())
    rows = [{**row, "baseline": "sklearn KNeighborsRegressor(brute, distance)", "ratio": t_sk / t_ours,
             "max_position_difference_m": same},
            {**row, "method": "sklearn-wknn", "value": n_query / t_sk, "ratio": 1.0, "max_position_difference_m": 0.0}]
    try:
        import faiss
    except ImportError:
        return rows
    index = faiss.IndexFlatL2(n_ap)
    index.add(ref.astype(np.float32))

    def faiss_wknn() -> np.ndarray:  # exact float32 search, then the same inverse-distance weights
        d2, idx = index.search(q.astype(np.float32), 5)
        w = 1.0 / (np.sqrt(np.maximum(d2, 0.0)) + 1e-12)
        return (w[..., None] * pos[idx]).sum(1) / w.sum(1, keepdims=True)

    t_faiss = _best_time(faiss_wknn, 3)
    rows.append({**row, "method": "faiss-wknn", "value": n_query / t_faiss, "ratio": t_sk / t_faiss,
                 "baseline": f"faiss {faiss.__version__} IndexFlatL2 (float32) + the same weights",
                 "max_position_difference_m": float(np.abs(faiss_wknn() - sk.predict(q)).max())})
    return rows


def learn2learn_status() -> dict[str, Any]:
    """learn2learn is the usual MAML wrapper; report whether it imports here. It is not a dependency: its 0.2.0
    release resolves to torch 2.14.1 (a CUDA build), torchvision, numpy < 2 and gsutil, which would replace the
    pinned CPU torch."""
    try:
        import learn2learn  # noqa: F401
        status = "importable"
    except Exception as exc:  # ImportError, or a build against another torch failing at import
        status = f"not usable here: {type(exc).__name__}: {str(exc)[:120]}"
    return {"protocol": "perf", "method": "learn2learn", "metric": "status", "value": status}


def _flops_of(step: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def training_flop_fraction(peak_gflops: float, repeats: int = 5) -> list[dict[str, Any]]:
    """Achieved GFLOP/s of the main training steps and their fraction of ``peak_gflops``."""
    rows = []
    for name, (step, what) in _training_steps().items():
        flops = _flops_of(step)
        seconds = _best_time(step, repeats)
        achieved = flops / seconds / 1e9
        rows.append({"protocol": "perf", "method": name, "metric": "training_gflops", "value": achieved,
                     "unit": "GFLOP/s", "fraction_of_peak": achieved / peak_gflops, "step_ms": 1e3 * seconds,
                     "flops_per_step": flops, "setting": what})
    return rows


def _training_steps() -> dict[str, tuple[Callable[[], Any], str]]:
    from xloc.learn import maml
    from xloc.learn.lwlm import LWLM
    from xloc.models.mateformer import Mateformer
    from xloc.models.mlp import MLP

    steps: dict[str, tuple[Callable[[], Any], str]] = {}
    torch.manual_seed(0)
    # MetaLoc: one first-order meta-gradient of a meta-batch of 32 tasks (vmap over tasks), MLP 4 x 64.
    net = MLP(15, 2, hidden=(64, 64, 64, 64))
    params = maml.get_params(net)
    g = torch.Generator().manual_seed(0)
    batch = maml.TaskBatch(torch.randn(32, 50, 15, generator=g), torch.randn(32, 50, 2, generator=g),
                           torch.randn(32, 50, 15, generator=g), torch.randn(32, 50, 2, generator=g))

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((pred - target) ** 2).mean()

    steps["metaloc-maml"] = (lambda: maml.meta_gradient(net, loss, params, batch, lr=0.01, steps=1),
                             "first-order meta-gradient, 32 tasks x 50+50 samples, MLP 4x64")
    # ALLoc: one Adam step of the Mateformer on 64 sequences of 64 references + queries (P3 size).
    mate = Mateformer(2049, d_model=64, depth=4)
    opt = torch.optim.Adam(mate.parameters(), 1e-3)
    csi, loc = torch.randn(64, 96, 2049), torch.randn(64, 96, 2)
    is_query = torch.zeros(64, 96, dtype=torch.bool)
    is_query[:, 64:] = True

    def alloc_step() -> None:
        out = mate(csi, loc, is_query)
        err = ((out - loc) ** 2)[is_query].mean()
        opt.zero_grad()
        err.backward()
        opt.step()

    steps["alloc-mateformer"] = (alloc_step, "Adam step, 64 sequences of 64 references + 32 queries, d 64, depth 4")
    # LWLM: one pretraining step (all three objectives) on 128 channels of 32 x 32, d 64, depth 3.
    lw = LWLM(patch=(4, 8), d_model=64, depth=3, heads=4, d_ff=128)
    h = torch.complex(torch.randn(128, 32, 32), torch.randn(128, 32, 32))
    steps["lwlm-pretrain"] = (lw.pretraining_step_for_profiling(h),
                              "SF-MCM + DTI + PICL step, 128 channels of 32 x 32, d 64, depth 3")
    return steps


def profile_summary(names: tuple[str, ...] = ("alloc-mateformer", "lwlm-pretrain"), steps: int = 3,
                    top: int = 6) -> list[dict[str, Any]]:
    """Where the time of the slowest training loops goes: torch.profiler's top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    loops = _training_steps()
    rows = []
    for name in names:
        step = loops[name][0]
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step()
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events) or 1.0
        rows.append({"protocol": "perf", "method": name, "metric": "profile", "value": "; ".join(
            f"{e.key} {100 * e.self_cpu_time_total / total:.0f} %" for e in events[:top])})
    return rows


def _fit_power_law(n: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    b, log_a = np.polyfit(np.log(n), np.log(y), 1)
    return float(np.exp(log_a)), float(b)


_WORKLOADS = {
    # name -> (imports, data setup, measured statement); n is substituted
    "wknn predict (1000 queries) vs references": (
        "import numpy as np\nfrom xloc.baselines.knn import KNNLocalizer",
        "rng = np.random.default_rng(0)\nknn = KNNLocalizer(5, weighted=True).fit_arrays("
        "rng.uniform(-100, -30, ({n}, 100)), rng.uniform(0, 50, ({n}, 2)))\nq = rng.uniform(-100, -30, (1000, 100))\n"
        "knn.predict(q[:10])",
        "knn.predict(q)"),
    "MetaLoc MAML-TS meta-training (30 iterations) vs environments": (
        "from xloc.data.fingerprints import FingerprintSet\nfrom xloc.learn.metaloc import MetaLoc\n"
        "from xloc.sim.pathloss import FAMILY_LETTERS, PathLossConfig, simulate_pathloss_environment",
        "envs = FingerprintSet(simulate_pathloss_environment(PathLossConfig(family=sorted(FAMILY_LETTERS)[i % 5]), i, "
        "name=f'e{{i}}')[0] for i in range({n}))",
        "MetaLoc('maml-ts', iterations=30).fit(envs)"),
    "CSI simulator (o1) vs users": (
        "from xloc.sim.presets import simulate_scenario\nsimulate_scenario('o1', 10, 0)", "",
        "simulate_scenario('o1', {n}, 0)"),
}

_PROBE = """
import time
{imports}
def rss(field):
    with open('/proc/self/status') as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith(field))
with open('/proc/self/clear_refs', 'w') as fh:
    fh.write('5')  # reset the peak (VmHWM) to the current resident size: import transients do not count
base = rss('VmRSS')
{setup}
{stmt}
times = []
for _ in range({repeats}):  # after the warm-up above (first-call allocations, lazy imports, JIT): the median
    t0 = time.perf_counter()
    {stmt}
    times.append(time.perf_counter() - t0)
print(sorted(times)[len(times) // 2], rss('VmHWM') - base)
"""


def _probe(name: str, n: int, repeats: int = 3) -> tuple[float, float]:
    """Median wall time [s] of ``repeats`` runs of the statement after one warm-up run, and peak resident memory
    [bytes] above the imports (data, model and the statement's temporaries), in a fresh process."""
    import subprocess
    import sys

    imports, setup, stmt = _WORKLOADS[name]
    code = _PROBE.format(imports=imports, setup=setup.format(n=n), stmt=stmt.format(n=n), repeats=repeats)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return float(out[-2]), max(float(out[-1]), 1.0)


def scaling(out: Path, quick: bool = False) -> list[dict[str, Any]]:
    """Time and peak memory (each size in a fresh process, RSS growth during the timed call) against problem
    size for KNN prediction and the CSI simulator, with log-log fits and the largest n that fits in 24 GiB."""
    sizes = {
        "wknn predict (1000 queries) vs references": [2000, 4000, 8000] if quick else
        [4000, 8000, 16000, 32000, 64000, 128000],
        "CSI simulator (o1) vs users": [500, 1000] if quick else [1000, 2000, 4000, 8000, 16000],
        "MetaLoc MAML-TS meta-training (30 iterations) vs environments": [2, 4] if quick else [2, 4, 8, 16, 32],
    }
    rows: list[dict[str, Any]] = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, ns in sizes.items():
        measured = [_probe(name, n, repeats=1 if quick else 3) for n in ns]
        n_arr = np.array(ns, float)
        t_arr = np.array([t for t, _ in measured])
        m_arr = np.array([m for _, m in measured])
        a_t, b_t = _fit_power_law(n_arr, t_arr)
        a_m, b_m = _fit_power_law(n_arr, m_arr)
        largest = (MACHINE_MEMORY_BYTES / a_m) ** (1 / b_m) if b_m > 0.05 else float("inf")
        t_line = axes[0].loglog(n_arr, t_arr, "o", label=f"{name}: t ~ n^{b_t:.2f}")[0]
        axes[0].loglog(n_arr, a_t * n_arr**b_t, "--", color=t_line.get_color(), lw=1)
        m_line = axes[1].loglog(n_arr, m_arr / 2**20, "o", label=f"{name}: mem ~ n^{b_m:.2f}")[0]
        axes[1].loglog(n_arr, a_m * n_arr**b_m / 2**20, "--", color=m_line.get_color(), lw=1)
        for n, (t, m) in zip(ns, measured, strict=True):
            rows.append({"protocol": "perf-scaling", "method": name, "metric": "seconds", "sweep": "n",
                         "sweep_value": n, "value": t, "peak_bytes": m})
        rows.append({"protocol": "perf", "method": name, "metric": "scaling", "time_exponent": b_t,
                     "memory_exponent": b_m, "largest_n_in_24_gib": largest,
                     "value": f"t ~ n^{b_t:.2f}, memory ~ n^{b_m:.2f}, largest n in 24 GiB ~ {largest:.3g} "
                              f"(measured up to {ns[-1]})"})
    axes[0].set_xlabel("problem size n")
    axes[0].set_ylabel("wall time [s] (median of 3 after a warm-up; dashed: fit)")
    axes[1].set_xlabel("problem size n")
    axes[1].set_ylabel("peak resident memory growth [MiB]")
    for ax in axes:
        ax.legend(fontsize=7)
    save_figure(fig, out / "perf_scaling.png")
    return rows


def simulator_vs_sionna(n_users: int = 500, seed: int = 0) -> list[dict[str, Any]]:
    """Users/s of xloc's geometric CSI simulator against Sionna RT receivers/s on the same layout size: three BSs
    (8-element ULA, 32 subcarriers over 40 MHz at 3.5 GHz) and ``n_users`` users over the 180 x 110 m street
    canyon -- Sionna on the shipped mesh at depth 3 (its own time and a warm second run), xloc on its city street
    (walls, blockers, scatterers; up to two bounces) with the same sites and user positions."""
    from xloc.bench.speed import geometric_on_rt_layout_s
    from xloc.sim.raytrace import RTBaseStation, RTConfig, require_sionna, simulate_raytraced
    from xloc.sim.rt_presets import RT_PRESETS, preset_sites, preset_users

    rows: list[dict[str, Any]] = []
    preset = RT_PRESETS["canyon"]
    try:
        rt = require_sionna()
    except Exception as exc:
        return [{"protocol": "perf", "method": "sionna-rt", "metric": "users_per_s", "value": None,
                 "setting": f"not measured: {exc}"}]
    sites = preset_sites(rt, preset, preset.scene)
    users = preset_users(rt, preset, preset.scene, n_users, seed, "test")
    cfg = RTConfig(scene=preset.scene, carrier_hz=preset.carrier_hz, bandwidth_hz=preset.bandwidth_hz,
                   n_subcarriers=preset.n_subcarriers, max_depth=preset.max_depth, chunk=n_users)
    times = []
    for _ in range(2):  # the first run pays Dr.Jit's compilation
        t0 = time.perf_counter()
        simulate_raytraced(cfg, [RTBaseStation(s.position_m, s.yaw_deg, preset.n_antennas) for s in sites], users,
                           name="speed")
        times.append(time.perf_counter() - t0)
    xloc_s = geometric_on_rt_layout_s("canyon", sites, users)
    setting = (f"{n_users} users x 3 BSs x 8 antennas x 32 subcarriers, 180 x 110 m; Sionna depth "
               f"{preset.max_depth} on the mesh, xloc <= 2 bounces on its street model")
    rows.append({"protocol": "perf", "method": "sionna-rt (first run, with JIT)", "metric": "users_per_s",
                 "value": n_users / times[0], "unit": "users/s", "setting": setting})
    rows.append({"protocol": "perf", "method": "sionna-rt (warm)", "metric": "users_per_s",
                 "value": n_users / times[1], "unit": "users/s", "setting": setting})
    rows.append({"protocol": "perf", "method": "xloc geometric simulator", "metric": "users_per_s",
                 "value": n_users / xloc_s, "unit": "users/s", "setting": setting,
                 "ratio": times[1] / xloc_s})
    return rows


def run_perf(out: Path, quick: bool = False) -> list[dict[str, Any]]:
    peak = peak_flops(1024 if quick else 2048)
    rows = [peak]
    rows += knn_vs_sklearn(1000, 500, 50) if quick else knn_vs_sklearn()
    rows.append(learn2learn_status())
    rows += maml_vs_peers(tasks=8, repeats=2) if quick else maml_vs_peers()
    rows += training_flop_fraction(peak["value"], repeats=2 if quick else 5)
    rows += profile_summary(steps=1 if quick else 3)
    rows += scaling(out, quick)
    if not quick:  # Dr.Jit's compilation alone takes most of a quick run; tests call simulator_vs_sionna apart
        rows += simulator_vs_sionna(500)
    return rows


def run(ctx: BenchContext) -> None:
    """``xloc bench --protocol perf``: speed against peers and the machine."""
    ctx.write("perf", run_perf(ctx.out, ctx.quick), seeds=[0])


def report(doc: dict[str, Any], results: Path) -> str:
    rows = doc["rows"]
    peak = next((r for r in rows if r.get("metric") == "peak_gflops"), None)
    out = []
    if peak:
        out.append(f"Machine peak: {peak['value']:.1f} GFLOP/s ({peak['setting']}).\n")
    knn = [r for r in rows if r.get("metric") == "queries_per_s"]
    if knn:
        out.append("WKNN prediction, xloc vs scikit-learn on the same data (`ratio` = xloc's speed-up):\n\n"
                   + markdown_table(knn, [("method", "method"), ("queries/s", "value"), ("setting", "setting"),
                                          ("ratio", "ratio"), ("max position difference [m]",
                                                               "max_position_difference_m")]) + "\n")
    l2l = next((r for r in rows if r.get("method") == "learn2learn"), None)
    if l2l:
        why = ("" if l2l["value"] == "importable" else
               " It is deliberately not installed: `pip install --dry-run learn2learn` (0.2.0) resolves to torch "
               "2.14.1 as a multi-GB CUDA build, torchvision, numpy 1.26 and gsutil, replacing the pinned CPU torch; "
               "the vmapped-vs-loop ratio in the MetaLoc section is the meta-training speed comparison instead.")
        out.append(f"learn2learn MAML: {l2l['value']}.{why}\n")
    peers = [r for r in rows if r.get("metric") == "maml_tasks_per_s"]
    if peers:
        out.append(f"MAML meta-gradient against the MAML libraries ({peers[0]['setting']}; `ratio` = xloc's speed-up; "
                   "the gradient difference is the largest absolute one from xloc's, against a largest gradient "
                   f"entry of {peers[0]['gradient_scale']:.3g}):\n\n"
                   + markdown_table(peers, [("implementation", "method"), ("tasks/s", "value"), ("ratio", "ratio"),
                                            ("max gradient difference", "max_gradient_difference")]) + "\n")
    sim = [r for r in rows if r.get("metric") == "users_per_s"]
    if sim:
        out.append(f"CSI simulator against Sionna RT on the same layout size ({sim[0]['setting']}; `ratio` = "
                   "xloc's speed-up over warm Sionna):\n\n"
                   + markdown_table(sim, [("simulator", "method"), ("users/s", "value"), ("ratio", "ratio")]) + "\n")
    train = [r for r in rows if r.get("metric") == "training_gflops"]
    if train:
        out.append("Training steps against the peak (FLOPs counted by torch.utils.flop_counter):\n\n"
                   + markdown_table(train, [("loop", "method"), ("GFLOP/s", "value"),
                                            ("fraction of peak", "fraction_of_peak"), ("step [ms]", "step_ms"),
                                            ("what", "setting")]) + "\n")
    prof = [r for r in rows if r.get("metric") == "profile"]
    if prof:
        out.append("Where the time goes (torch.profiler, self CPU time of the top operators):\n\n"
                   + markdown_table(prof, [("loop", "method"), ("top operators", "value")]) + "\n")
    scal = [r for r in rows if r.get("metric") == "scaling"]
    if scal:
        lines = ["| what | time | memory | largest n in 24 GiB |", "|---|---|---|---|"]
        for r in scal:
            flat = r["memory_exponent"] < 0.1
            largest = "not memory-bound at the sizes measured" if flat else f"~{r['largest_n_in_24_gib']:.2g}"
            lines.append(f"| {r['method']} | ~ n^{r['time_exponent']:.2f} | "
                         f"{'flat' if flat else '~ n^' + format(r['memory_exponent'], '.2f')} | {largest} |")
        out.append("Scaling (log-log fits, each size in a fresh process; memory = peak resident growth):\n\n"
                   + "\n".join(lines))
    return "\n".join(out) + "\n\n" + markdown_images(results, ["perf_scaling.png", "p3_complexity.png"])
