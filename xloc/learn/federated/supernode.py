"""``flower-supernode`` with a shorter poll: Flower 1.41's SuperNode waits a fixed 3 s before asking the SuperLink
again when it found no message, and 0.5 s between looks for its ClientApp's reply. MAML-DG sends its two messages
per meta-iteration one after the other to idle nodes, so those waits, not the work, set its pace over HTTP
(about 5 s per message on loopback). This entry point runs the same SuperNode with both waits capped at
``XLOC_SUPERNODE_POLL_S`` seconds (default 0.02): more requests to the SuperLink while idle (50 a second per node at
the default), in exchange for messages that are answered in tens of milliseconds. Every argument is
``flower-supernode``'s.

    python -m xloc.learn.federated.supernode --insecure --superlink HOST:PORT --isolation process ...

It replaces the module's ``time`` with a copy whose ``sleep`` is capped; nothing else of Flower changes, and the
``flwr`` pin in ``pyproject.toml`` keeps the module path valid (a test runs it).
"""

from __future__ import annotations

import os
import time
import types

__all__ = ["POLL_ENV", "capped_time", "main"]

POLL_ENV = "XLOC_SUPERNODE_POLL_S"


def capped_time(poll_s: float) -> types.SimpleNamespace:
    """A stand-in for the ``time`` module whose ``sleep`` waits at most ``poll_s`` seconds."""
    names = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    return types.SimpleNamespace(**{**names, "sleep": lambda seconds: time.sleep(min(float(seconds), poll_s))})


def main() -> None:
    raw = os.environ.get(POLL_ENV, "0.02")
    try:
        poll_s = float(raw)
    except ValueError:
        raise SystemExit(f"{POLL_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0.001 <= poll_s <= 3.0:
        raise SystemExit(f"{POLL_ENV} must lie in [0.001, 3] s, got {poll_s}")
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli import flower_supernode

    setattr(start_client_internal, "time", capped_time(poll_s))  # noqa: B010 -- typed as a module only where flwr is installed
    flower_supernode()


if __name__ == "__main__":
    main()
