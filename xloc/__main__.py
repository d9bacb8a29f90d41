"""``python -m xloc``: the ``xloc`` command."""

from xloc.cli import app

app()
