"""``xloc`` command line, one module per area (data, sim, learn, eval, serve); ``app`` is the Typer app."""

from __future__ import annotations

from xloc.cli.common import app  # isort: skip
from xloc.cli import data, sim, learn, eval, serve  # noqa: F401  # isort: skip  (importing registers the commands)

__all__ = ["app"]
