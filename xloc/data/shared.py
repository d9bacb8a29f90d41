"""Where the real datasets live by default: ``../shared/data/<folder>`` beside an xloc checkout, unless an
environment variable names another folder (benches and tests read them there; importers take any path)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_root", "CSU_CSI_ROOT", "UMDSI_ROOT"]


def shared_root(folder: str, env_var: str) -> Path:
    """``$<env_var>`` if set, else ``../shared/data/<folder>`` beside the checkout this package is in."""
    return Path(os.environ.get(env_var, Path(__file__).resolve().parents[2].parent / "shared" / "data" / folder))


#: The CSU Nexmon CSI corridors (``$XLOC_CSU_CSI_ROOT``)
CSU_CSI_ROOT = shared_root("csu-csi", "XLOC_CSU_CSI_ROOT")
#: The UMinho DSI long-term site surveys (``$XLOC_UMDSI_ROOT``)
UMDSI_ROOT = shared_root("umdsi", "XLOC_UMDSI_ROOT")
