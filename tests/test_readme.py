"""The README's command-line walkthrough runs as written, in order, from a fresh folder beside ``../shared``.

Sizes are cut by the substitutions below (users, seeds, iterations, epochs); every other word of each line is the
README's. Lines that belong to other tests (the long benchmarks, ray tracing, Flower, the server) are listed in
ELSEWHERE, so a new README line is run unless someone says where else it is tested.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import skip_or_fail
from xloc.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
SHARED = Path(__file__).resolve().parents[2] / "shared"

#: Lines run elsewhere (first words -> where).
ELSEWHERE = {
    "xloc bench": "the benchmarks themselves; tests/bench runs them at quick sizes",
    "make twins": "ray tracing; tests/sim/test_raytrace.py, test_rt_presets.py",
    "xloc simulate --engine sionna": "ray tracing; tests/sim/test_raytrace.py",
    "xloc federated": "Flower; tests/learn/test_federated.py and tests/learn/test_hosts.py",
    "xloc report": "works on the checkout's benchmarks/results; tests/bench/test_report.py",
    "XLOC_ADMIN_KEY=change-me xloc serve": "the server; tests/serve",
    "xloc demo": "tests/test_cli.py::test_demo_prints_table (a minute on 2 cores)",
}

#: Smaller sizes: (pattern, replacement) applied to every line, then options added per command.
SMALLER = [(r"--users \d+", "--users 120"), (r"--test-users \d+", "--test-users 30"), (r"--seeds \d+", "--seeds 1"),
           (r"--iterations \d+", "--iterations 3"), (r"--channels \d+", "--channels 60")]
ADDED = {
    "train": ["--iterations", "3"],
    "pretrain": ["--epochs", "1", "--param", "depth=1", "--param", "d_model=32", "--param", "d_ff=64"],
    "adapt": ["--steps", "3"],
    "finetune": ["--steps", "3"],
    "corpus": ["--chunk", "30"],
    "evaluate": ["--k", "10"],
}


def walkthrough() -> list[str]:
    text = README.read_text()
    block = text[text.index("## Command line"):]
    block = block[block.index("```bash\n") + len("```bash\n"):]
    block = block[:block.index("```")]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_walkthrough_runs_in_order(tmp_path, monkeypatch):
    if not (SHARED / "data" / "sodindoorloc").is_dir():
        skip_or_fail("data", f"{SHARED}/data/sodindoorloc is not there")
    (tmp_path / "shared").symlink_to(SHARED)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # so ../shared/data/... resolves as in a checkout beside it
    runner = CliRunner()
    ran = 0
    for line in walkthrough():
        if any(line.startswith(prefix) for prefix in ELSEWHERE):
            continue
        for pattern, replacement in SMALLER:
            line = re.sub(pattern, replacement, line)
        words = shlex.split(line)
        assert words[0] == "xloc", f"README line is not an xloc command: {line}"
        args = words[1:] + [w for w in ADDED.get(words[1], []) if f" {w} " not in f" {line} "]
        if words[1] == "train" and "--iterations" in line:
            args = words[1:]
        if words[1] == "evaluate" and "--target" not in line and "--protocol" in line:
            args += ["--target", "SYL"]
        if words[1] == "evaluate" and "maml-dg" in words:
            args += ["--param", "maml-dg.iterations=3"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"README line failed: xloc {' '.join(args)}\n{result.output}"
        ran += 1
    assert ran >= 20
