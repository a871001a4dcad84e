"""Named pause points for fault-injection tests of slow and crashing workers.

Inactive (one dictionary lookup) unless ``MARKET_FAILPOINTS`` is set, e.g.::

    MARKET_FAILPOINTS="claimed=30,delivering=@/tmp/go"

pauses 30 s at ``claimed`` and, at ``delivering``, until the file ``/tmp/go`` exists (at
most ``MAX_WAIT_S``). Tests use them to hold a real ``market worker`` process in one phase
of a run (then SIGKILL it, or let the reaper take its lease) without changing what the
worker does. Points: ``claimed`` (lease taken, data untouched), ``data_touched`` (marked,
not yet decrypted), ``decrypted`` (plaintext in memory, not yet encoded), ``delivering``
(model trained and written, delivery transaction not yet begun).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

ENV = "MARKET_FAILPOINTS"
MAX_WAIT_S = 600.0

log = logging.getLogger(__name__)


def _points() -> dict[str, str]:
    raw = os.environ.get(ENV, "")
    points = {}
    for item in raw.split(","):
        name, _, value = item.strip().partition("=")
        if name and value:
            points[name] = value
    return points


def pause(name: str) -> None:
    """Wait here if the failpoint ``name`` is configured; otherwise return at once."""
    value = _points().get(name) if os.environ.get(ENV) else None
    if value is None:
        return
    log.warning("failpoint %s: pausing (%s)", name, value)
    if value.startswith("@"):
        release = Path(value[1:])
        deadline = time.monotonic() + MAX_WAIT_S
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        time.sleep(float(value))
