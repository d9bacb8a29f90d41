"""The benchmark registry: every ``xloc bench`` protocol is one entry here and one module in this package.

A bench names two functions of its module as ``"module:function"``: ``run(ctx: BenchContext) -> None``, which
computes its rows and writes them with ``ctx.write`` (as it goes, so a stop loses little), and ``report(doc, results)
-> str``, its section of ``benchmarks/REPORT.md``. They are imported only when the bench runs or is reported, so
``xloc --help`` stays free of torch. A new bench is one module plus one entry in ``BENCHES``; ``xloc bench`` and
``xloc report`` then loop over it with no other edit.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xloc.errors import ConfigError

__all__ = ["BenchSpec", "BenchContext", "BENCHES", "get", "names", "specs"]


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(f"xloc.bench.{module}"), attr)


@dataclass(frozen=True)
class BenchSpec:
    """One benchmark: ``xloc bench --protocol NAME`` writes ``<results>/<result>.json``."""

    name: str
    result: str
    title: str
    run: str
    report: str | None = None
    experiments: str | None = None  # "module:NAMES" of the parts --experiment may pick
    in_quick: bool = True  # part of `xloc bench --quick` without --protocol
    #: "module:function" rendering this bench's README table from its result document (``xloc report`` writes it
    #: between ``<!-- xloc report: NAME -->`` and ``<!-- /xloc report: NAME -->`` in README.md)
    readme: str | None = None

    def runner(self) -> Callable[[BenchContext], None]:
        return _resolve(self.run)

    def renderer(self) -> Callable[[dict[str, Any], Path], str] | None:
        return None if self.report is None else _resolve(self.report)

    def readme_renderer(self) -> Callable[[dict[str, Any]], str] | None:
        return None if self.readme is None else _resolve(self.readme)

    def experiment_names(self) -> tuple[str, ...]:
        return () if self.experiments is None else tuple(_resolve(self.experiments))


@dataclass
class BenchContext:
    """What every bench gets from ``xloc bench``: where to write, how big, which seeds, methods and parts."""

    out: Path
    command: str
    quick: bool = False
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    methods: list[str] | None = None
    experiments: list[str] | None = None
    users: int = 5000
    append: bool = False
    #: keep this commit's rows already in ``out`` and skip the work they record (benches that support it)
    resume: bool = False
    log: Callable[[str], Any] = print
    started: float = field(default_factory=time.perf_counter)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def select(self, valid: Sequence[str]) -> list[str]:
        """The parts of a bench to run: those of ``--experiment`` it has, else all of them."""
        return [e for e in (self.experiments or []) if e in valid] or list(valid)

    def finished_rows(self, result: str) -> list[dict[str, Any]]:
        """With ``--resume``: the rows of ``<out>/<result>.json`` that this very commit wrote (an interrupted run's
        work, safe to keep); otherwise none."""
        from xloc.eval.results import git_commit, read_results

        if not self.resume:
            return []
        commit = git_commit()
        if commit.endswith("+dirty") or commit == "unknown":  # no way to tell which code wrote them
            return []
        return [r for r in read_results(self.out / f"{result}.json").get("rows", []) if r.get("commit") == commit]

    def write(self, result: str, rows: list[dict[str, Any]], *, seeds: Sequence[int] | None = None) -> Path:
        """Write (replace, or with ``--append`` merge) ``<out>/<result>.json``; wall time counts from the start."""
        from xloc.eval.results import write_results

        path = self.out / f"{result}.json"
        write_results(path, rows, command=self.command, seeds=list(self.seeds if seeds is None else seeds),
                      wall_s=self.elapsed_s(), append=self.append)
        return path


#: Run and report order. The report shows the sections in this order.
BENCHES: dict[str, BenchSpec] = {s.name: s for s in (
    BenchSpec("p1", "p1", "P1 — SODIndoorLoc, leave one environment out (MetaLoc vs KNN/WKNN/TL/RI)",
              "leave_one_out:run_p1", "leave_one_out:report_p1", readme="leave_one_out:readme_p1"),
    BenchSpec("p2", "p2", "P2 — synthetic path-loss families (MetaLoc)", "leave_one_out:run_p2",
              "leave_one_out:report_p2", readme="leave_one_out:readme_p2"),
    BenchSpec("metaloc", "metaloc", "MetaLoc figures and meta-training speed", "metaloc:run", "metaloc:report"),
    BenchSpec("metaloc-csi", "metaloc-csi", "MetaLoc on CSI images (Table III)", "metaloc:run_csi_images",
              "metaloc:report_csi_images", experiments="metaloc:CSI_ROOMS", in_quick=False),
    BenchSpec("metaloc-regimes", "metaloc-regimes", "Where meta-learning beats transfer learning (P1 regimes)",
              "regimes:run", "regimes:report", experiments="regimes:EXPERIMENTS", in_quick=False),
    BenchSpec("p3", "p3", "P3 — ALLoc on simulated CSI scenarios", "alloc:run", "alloc:report",
              experiments="alloc:EXPERIMENTS"),
    BenchSpec("p4", "p4", "P4 — LWLM pretraining and ToA/AoA/single-/multi-BS fine-tuning", "lwlm:run",
              "lwlm:report", experiments="lwlm:PARTS"),
    BenchSpec("p5", "p5", "P5 — AGML with sparse labels, unlabelled data and digital twins", "agml:run",
              "agml:report", experiments="agml:DATASETS"),
    BenchSpec("twins", "twins", "P3, P4 and P5 on the ray-traced twins (Sionna RT)", "twins:run", "twins:report",
              experiments="twins:PARTS"),
    BenchSpec("lwlm-foundation", "lwlm-foundation", "LWLM's corpus-pretrained checkpoint on ray-traced sets (canyon, "
              "unseen Etoile, Florence, office)", "foundation:run", "foundation:report",
              experiments="foundation:EXPERIMENTS"),
    BenchSpec("lwlm-sfmcm", "lwlm-sfmcm", "Does SF-MCM learn? Masked channel modelling alone and beside DTI and PICL",
              "sfmcm:run", "sfmcm:report", experiments="sfmcm:EXPERIMENTS", in_quick=False),
    BenchSpec("drift", "drift", "Drift in the same site: stale survey + fresh points, and drift detection",
              "drift:run", "drift:report", experiments="drift:PARTS", readme="drift:readme_table"),
    BenchSpec("real", "real", "Real data: SODIndoorLoc, CSU Nexmon CSI and the UMinho long-term surveys, every "
              "method beside WKNN on the same information", "real:run", "real:report", experiments="real:PARTS",
              in_quick=False, readme="real:readme_table"),
    BenchSpec("sim-speed", "speed", "Simulator speed", "speed:run", "speed:report", experiments="speed:PARTS"),
    BenchSpec("service", "service", "Service load", "service:run", "service:report"),
    BenchSpec("perf", "perf", "Performance against peers and the machine", "perf:run", "perf:report"),
)}


def get(name: str) -> BenchSpec:
    """The bench called ``name``; a clear error naming the valid ones otherwise."""
    try:
        return BENCHES[name]
    except KeyError:
        raise ConfigError(f"unknown bench {name!r}; expected one of {', '.join(BENCHES)}") from None


def names() -> list[str]:
    return list(BENCHES)


def specs() -> list[BenchSpec]:
    return list(BENCHES.values())
