"""Flower's fixed waits, shortened for xloc's processes (SuperNode, ClientApp worker, ServerApp).

Flower 1.41 waits on a clock, not on events, in three places that set the pace of MetaLoc's short messages:

* the SuperNode sleeps 3 s after a pull from the SuperLink that found no message, and 0.5 s between looks for its
  ClientApp's reply (:func:`capped_time`);
* pulling a message's objects (its arrays and records), an object not stored yet is asked for again after 1 s,
  then 2, 4, ... up to 10 s (``pull_objects``' backoff, :func:`shorten_object_pulls`). A ClientApp asks for the
  objects of its message as soon as its SuperNode holds the message, and nearly every message paid that first
  second;
* idle processes poll; polling every few milliseconds from six processes kept both cores of a small machine busy
  answering polls (:class:`Backoff`).

Each is changed by replacing a module attribute or a default in the running process; the ``flwr`` pin in
``pyproject.toml`` keeps the names valid and a test runs every replacement.
"""

from __future__ import annotations

import time
import types

__all__ = ["Backoff", "capped_time", "shorten_object_pulls", "OBJECT_PULL_FIRST_S", "OBJECT_PULL_CAP_S"]

#: first wait [s] before asking again for an object that is not stored yet (Flower: 1 s)
OBJECT_PULL_FIRST_S = 0.002
#: longest such wait [s] (Flower: 10 s)
OBJECT_PULL_CAP_S = 0.1


class Backoff:
    """Waits that start at ``first_s`` and grow by half at each call up to ``cap_s``; :meth:`reset` after work.

    A process that was just busy looks again within milliseconds (MAML-DG's next message often follows its reply),
    while an idle one settles at ``cap_s``."""

    def __init__(self, cap_s: float, first_s: float = 0.001) -> None:
        self.cap_s, self.first_s = cap_s, min(first_s, cap_s)
        self.next_s = self.first_s

    def reset(self) -> None:
        self.next_s = self.first_s

    def wait(self) -> None:
        pause = self.next_s
        self.next_s = min(self.next_s * 1.5, self.cap_s)
        time.sleep(pause)


def capped_time(poll_s: float) -> types.SimpleNamespace:
    """A stand-in for the SuperNode module's ``time`` whose ``sleep`` waits at most ``poll_s`` seconds.

    Flower's SuperNode sleeps 3 s after a pull that found nothing (idle) and 0.5 s while its ClientApp works
    (busy). Idle waits back off from 1 ms to ``poll_s``; a busy wait means a message just came, so the next idle
    wait starts short again."""
    names = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    idle = Backoff(poll_s)

    def sleep(seconds: float) -> None:
        if float(seconds) >= 1.0:  # the idle wait after an empty pull
            idle.wait()
        else:  # waiting for the ClientApp's reply: it is working, so look again soon
            idle.reset()
            time.sleep(min(float(seconds), 0.002))

    return types.SimpleNamespace(**{**names, "sleep": sleep})


def shorten_object_pulls(first_s: float = OBJECT_PULL_FIRST_S, cap_s: float = OBJECT_PULL_CAP_S,
                         max_time_s: float | None = None) -> None:
    """Make this process retry objects that are not stored yet after ``first_s`` (doubling up to ``cap_s``)
    instead of Flower's 1 s (up to 10 s). The callers take the defaults of ``pull_objects`` and
    ``pull_and_inflate_object_from_tree``, which live on the functions. The tries per object grow so that an
    object is still waited for as long as Flower waits (500 tries at its 10 s cap).

    ``max_time_s`` also bounds the whole pull (Flower: 2 h). The server sets it to its reply timeout: a client
    that dies while uploading its reply leaves objects that never arrive, and Flower would keep asking for them
    until the upload session expires (180 s); bounded, the reply comes back as an error naming its sender."""
    from flwr.supercore.inflatable import inflatable_utils

    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        defaults = function.__kwdefaults__
        names = {"initial_backoff", "backoff_cap", "max_tries_per_object", "max_time"}
        if defaults is None or not names <= set(defaults):
            raise RuntimeError(f"flwr's {function.__name__} has no {sorted(names)} defaults any more: "
                               "check the flwr pin")
        if max_time_s is not None:
            defaults["max_time"] = max_time_s
        if defaults["initial_backoff"] == first_s and defaults["backoff_cap"] == cap_s:
            continue
        waited_s = float(defaults["max_tries_per_object"]) * float(defaults["backoff_cap"])
        defaults.update(initial_backoff=first_s, backoff_cap=cap_s,
                        max_tries_per_object=int(round(waited_s / cap_s)))
