"""``flower-supernode`` with shorter waits: Flower 1.41's SuperNode waits a fixed 3 s before asking the SuperLink
again when it found no message, 0.5 s between looks for its ClientApp's reply, and 1 s before asking again for an
object not stored yet. MAML-DG sends its two messages per meta-iteration one after the other to idle nodes, so
those waits, not the work, set its pace (about 5 s per message on loopback). This entry point runs the same
SuperNode with its idle waits backing off from 1 ms to ``XLOC_SUPERNODE_POLL_S`` seconds (default 0.1: at most 10
requests a second per idle node) and object retries from 2 ms (:mod:`xloc.learn.federated.waits`). Every argument
is ``flower-supernode``'s.

    python -m xloc.learn.federated.supernode --insecure --superlink HOST:PORT --isolation process ...

Nothing else of Flower changes; the ``flwr`` pin in ``pyproject.toml`` keeps the names valid (a test runs it).
"""

from __future__ import annotations

import os

from xloc.learn.federated.waits import capped_time, shorten_object_pulls

__all__ = ["POLL_ENV", "main"]

POLL_ENV = "XLOC_SUPERNODE_POLL_S"


def main() -> None:
    raw = os.environ.get(POLL_ENV, "0.1")
    try:
        poll_s = float(raw)
    except ValueError:
        raise SystemExit(f"{POLL_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0.001 <= poll_s <= 3.0:
        raise SystemExit(f"{POLL_ENV} must lie in [0.001, 3] s, got {poll_s}")
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli import flower_supernode

    setattr(start_client_internal, "time", capped_time(poll_s))  # noqa: B010 -- typed as a module only with flwr
    shorten_object_pulls()
    flower_supernode()


if __name__ == "__main__":
    main()
