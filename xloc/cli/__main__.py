"""``python -m xloc.cli``: how torchrun starts the ranks of a distributed ``xloc train`` / ``xloc pretrain``."""

from xloc.cli import app

app()
