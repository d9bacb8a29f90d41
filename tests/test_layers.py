"""The house's floors: imports run down the layers (data -> features/sim -> models -> learn -> baselines -> methods
-> eval/serve -> bench -> cli), never up -- lazy imports inside functions included."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xloc"
#: room -> floor; a room may import its own floor's rooms and those below, never a higher floor's
FLOORS = {"errors": 0, "io": 0, "figures": 0, "progress": 0, "data": 1, "features": 2, "sim": 3, "models": 3,
          "learn": 4, "baselines": 5, "methods": 6, "eval": 7, "serve": 7, "bench": 8, "cli": 9, "__main__": 10}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "xloc" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "xloc":
                found += [(node.lineno, f"xloc.{a.name}") for a in node.names]
    return found


def test_every_room_has_a_floor():
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert rooms <= set(FLOORS), f"give these rooms a floor: {sorted(rooms - set(FLOORS))}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_up(path):
    here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if here == "__init__":
        return
    up = [f"line {line}: {module}" for line, module in _imports(path)
          if (room := _room(module)) is not None and room in FLOORS and FLOORS[room] > FLOORS[here]]
    assert not up, f"xloc/{path.relative_to(PACKAGE)} ({here}, floor {FLOORS[here]}) imports up: {up}"
