"""Plain ``make test`` (the dev extra only) must pass: a test that needs an optional extra (raytrace, federated)
belongs to that extra's group -- it calls ``skip_or_fail`` (directly or through a ``_need_*`` helper) before it
reaches the optional package. CI runs the plain suite first without those extras, then the groups with them."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent

#: Names that reach an optional extra: its packages, and xloc's entry points that import them.
OPTIONAL_NAMES = {
    "sionna", "drjit", "mitsuba", "flwr", "require_sionna", "simulator_vs_sionna", "simulate_raytraced",
    "generate_twin", "FederatedRun", "run_hosts", "run_torchrun_across",
}

#: Tests that reach an optional entry point only to see it refuse bad arguments before it imports the extra;
#: CI's first phase runs them without the extras, which proves it.
REFUSED_BEFORE_IMPORT = {"test_run_settings_are_validated", "test_bad_input_is_refused"}


def _names(node: ast.AST) -> set[str]:
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, ast.alias):
            found.update(sub.name.split("."))
        elif isinstance(sub, ast.ImportFrom) and sub.module:
            found.update(sub.module.split("."))
    return found


def _guarded(func: ast.FunctionDef, guards: set[str]) -> bool:
    """Whether ``func`` calls skip_or_fail or a guard helper before anything else can fail."""
    return bool(_names(func) & guards)


def test_every_test_that_reaches_an_optional_extra_belongs_to_its_group():
    unguarded = []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        guards = {"skip_or_fail", "importorskip"}
        guards |= {f.name for f in functions if not f.name.startswith("test_") and "skip_or_fail" in _names(f)}
        for func in functions:
            if not func.name.startswith("test_") or func.name.startswith("test_missing_") \
                    or func.name in REFUSED_BEFORE_IMPORT:
                continue
            reached = _names(func) & OPTIONAL_NAMES
            if reached and not _guarded(func, guards):
                unguarded.append(f"{path.relative_to(TESTS.parent)}::{func.name} reaches {sorted(reached)}")
    assert not unguarded, "tests outside their optional group (call skip_or_fail first):\n" + "\n".join(unguarded)


def test_the_check_finds_an_unguarded_test(tmp_path):
    # the check above must be able to fail: a test calling Sionna with no guard is found
    func = ast.parse("def test_x():\n    simulate_raytraced(cfg)\n").body[0]
    assert isinstance(func, ast.FunctionDef)
    assert _names(func) & OPTIONAL_NAMES and not _guarded(func, {"skip_or_fail"})
