"""``benchmarks/REPORT.md``: one generated report over every committed result file.

``xloc report`` (and the end of every ``xloc bench``) rebuilds it from ``benchmarks/results/*.json`` alone, so
the numbers in it are exactly those files'; each section names the command, seeds, wall time and machine of the
run behind it, and links the plots that run wrote.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xloc.eval.results import markdown_table, read_results
from xloc.io import atomic_write_text

__all__ = ["write_report", "SECTIONS"]


def _provenance(doc: dict[str, Any]) -> str:
    """The file's last command and machine, and where its rows came from: one line when every row shares one
    command and commit, otherwise a table of the (command, commit, date, version) groups and their row counts."""
    machine = doc.get("machine", {})
    versions = doc.get("versions", {})
    head = (f"Last run: `{doc.get('command')}` · seeds {doc.get('seeds')} · wall time {doc.get('wall_s', 0):.0f} s"
            f" · {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores · torch {versions.get('torch', '?')}")
    groups: dict[tuple[str, ...], int] = {}
    for row in doc.get("rows", []):
        key = tuple(str(row.get(k, "not recorded")) for k in ("command", "commit", "date", "xloc_version"))
        groups[key] = groups.get(key, 0) + 1
    backfilled = any("provenance" in row for row in doc.get("rows", []))
    note = " (backfilled from git history: the commit that committed the file; not rerun since)" if backfilled else ""
    if len(groups) == 1:
        command, commit, date, version = next(iter(groups))
        return head + f"  \nEvery row: commit `{commit}`{note}, {date}, xloc {version}, `{command}`"
    lines = ["| rows | commit | date | xloc | command |", "|---|---|---|---|---|"]
    lines += [f"| {n} | `{c}` | {d} | {v} | `{cmd}` |" for (cmd, c, d, v), n in sorted(groups.items(),
                                                                                      key=lambda kv: kv[0][2])]
    return head + "\n\nRows of this file come from several runs (merged with `--append`):\n\n" + "\n".join(lines)


def _images(results: Path, names: list[str]) -> str:
    return "\n".join(f"![{n}](results/{n})" for n in names if (results / n).is_file())


def _p12(protocol: str) -> Callable[[dict[str, Any], Path], str]:
    def section(doc: dict[str, Any], results: Path) -> str:
        from xloc.eval.report import summary_table

        label = "R" if protocol == "p2" else "k"
        return (f"Leaderboard by {label} (errors [m] averaged over the targets; mean ± std over seeds; `adapt [s]` "
                f"is per target and seed; MetaLoc methods take the steps in `steps`):\n\n"
                + summary_table(protocol, doc["rows"]) + "\n\n"
                + _images(results, [f"{protocol}_cdf.png", f"{protocol}_steps.png", f"{protocol}_convergence.png"]))
    return section


def _p3(doc: dict[str, Any], results: Path) -> str:
    from xloc.eval.alloc_experiments import summary_markdown

    return (summary_markdown(doc["rows"]) + "\n\n" + _images(results, sorted(
        p.name for p in results.glob("p3_*.png"))))


def _p4(doc: dict[str, Any], results: Path) -> str:
    from xloc.eval.lwlm_experiments import summary_markdown

    return summary_markdown(doc["rows"]) + "\n\n" + _images(
        results, ["p4_layout-A.png", "p4_unseen-layout-B.png", "p4_ablation.png", "p4_pretraining.png"])


def _p5(doc: dict[str, Any], results: Path) -> str:
    from xloc.eval.agml_experiments import summary_markdown

    return summary_markdown(doc["rows"]) + "\n\n" + _images(results, sorted(
        p.name for p in results.glob("p5_*.png")))


def _metaloc(doc: dict[str, Any], results: Path) -> str:
    speed = [r for r in doc["rows"] if r.get("metric") == "meta_train_tasks_per_s"]
    text = ""
    if speed:
        text += ("First-order MAML meta-training throughput, tasks batched with `torch.func.vmap` vs a per-task "
                 "Python loop on the same backbone and tasks:\n\n"
                 + markdown_table(speed, [("method", "method"), ("tasks/s", "value"), ("setting", "setting"),
                                          ("ratio", "ratio")]) + "\n\n")
    return text + _images(results, ["fig8_rmse_vs_steps.png", "p1_convergence.png"])


def _speed(doc: dict[str, Any], _results: Path) -> str:
    return ("CSI simulator throughput (all paths up to second-order reflections):\n\n"
            + markdown_table(doc["rows"], [("preset", "dataset"), ("environments", "environments"),
                                           ("users", "n_users"), ("users/s", "value")]))


def _service(doc: dict[str, Any], _results: Path) -> str:
    return ("Locate API on loopback (client threads and server share the machine), WKNN version, 400 requests per "
            "row:\n\n" + markdown_table(doc["rows"], [
                ("clients", "clients"), ("fingerprints / request", "batch"), ("requests/s", "requests_per_s"),
                ("fingerprints/s", "fingerprints_per_s"), ("p50 [ms]", "p50_ms"), ("p99 [ms]", "p99_ms"),
                ("failed", "failed")]))


def _perf(doc: dict[str, Any], results: Path) -> str:
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
    return "\n".join(out) + "\n\n" + _images(results, ["perf_scaling.png", "p3_complexity.png"])


def _twins(doc: dict[str, Any], results: Path) -> str:
    from xloc.eval import agml_experiments, alloc_experiments, lwlm_experiments

    rows = doc["rows"]
    coll = [r for r in rows if r.get("protocol") == "twins-collection"]
    text = ""
    if coll:
        text += ("The collection (`make twins`; Sionna RT, 2 CPU cores, LLVM back-end; seconds include scene "
                 "loading and JIT):\n\n" + markdown_table(coll, [
                     ("preset", "dataset"), ("scene", "scene"), ("radio", "setting"),
                     ("environments", "environments"),
                     ("users", "n_users"), ("no-path users", "no_path_users"), ("LoS share", "los_fraction"),
                     ("seconds", "seconds"), ("users/s", "users_per_s"), ("MB", "mb")]) + "\n\n")
    for title, module in (("P3 on ray-traced scenes", alloc_experiments),
                          ("P4 on ray-traced scenes", lwlm_experiments), ("P5 on ray-traced twins", agml_experiments)):
        body = module.summary_markdown(rows)
        if body.strip():
            text += f"### {title}\n\n{body}\n\n"
    return text + _images(results, sorted(p.name for p in results.glob("*_rt-*.png")))


#: result file stem -> (title, renderer)
SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any], Path], str]]] = {
    "p1": ("P1 — SODIndoorLoc, leave one environment out (MetaLoc vs KNN/WKNN/TL/RI)", _p12("p1")),
    "p2": ("P2 — synthetic path-loss families (MetaLoc)", _p12("p2")),
    "metaloc": ("MetaLoc figures and meta-training speed", _metaloc),
    "p3": ("P3 — ALLoc on simulated CSI scenarios", _p3),
    "p4": ("P4 — LWLM pretraining and ToA/AoA/single-/multi-BS fine-tuning", _p4),
    "p5": ("P5 — AGML with sparse labels, unlabelled data and digital twins", _p5),
    "twins": ("P3, P4 and P5 on the ray-traced twins (Sionna RT)", _twins),
    "speed": ("Simulator speed", _speed),
    "service": ("Service load", _service),
    "perf": ("Performance against peers and the machine", _perf),
}


def write_report(results: Path = Path("benchmarks/results"), out: Path | None = None) -> Path:
    """Rebuild the report from the result files in ``results`` (default output: its parent's REPORT.md)."""
    out = out or results.parent / "REPORT.md"
    parts = ["# xloc benchmark report", "",
             f"Generated by `xloc report` from `{results.as_posix()}/*.json` on "
             f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Every number below is read from those "
             "files; rerun a protocol with the command shown in its section, then `xloc report`.", ""]
    missing = []
    for stem, (title, render) in SECTIONS.items():
        doc = read_results(results / f"{stem}.json")
        if not doc:
            missing.append(stem)
            continue
        parts += [f"## {title}", "", _provenance(doc), "", render(doc, results), ""]
    if missing:
        parts += ["## Not run yet", "", ", ".join(f"`{m}`" for m in missing), ""]
    atomic_write_text(out, "\n".join(parts))
    return out
