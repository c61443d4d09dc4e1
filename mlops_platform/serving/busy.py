"""How busy the champion is: the share of recent wall time during which it had a request in flight.

The shadow's admission test (shadow.py). Read at the end of `benchmarks/serving.py --shadow` cells
(sklearn and torch models, 2 vCPUs shared with the load generator, 1-row requests): 0.68-0.77 at half
the champion's maximum rate (open loop), 0.88-1.00 at saturation (closed loop, 8 connections). The
event loop thread's own CPU share separates the two worse (0.49-0.51 against 0.58-0.74), and the model
thread's not at all: the loop, parsing and answering, is what saturates, and then shares the cores
with the load.
"""

from __future__ import annotations

import math
import time

# The time constant of the moving average: long enough to span many requests, short enough that a
# burst of traffic sheds shadow copies within a fraction of a second.
WINDOW_S = 0.25


class BusyShare:
    """An exponential moving average (time constant `window_s`) of a 0/1 busy signal, updated only when
    the signal flips. Its state is one tuple, replaced whole, so a reader in another thread never sees
    half an update."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._state = (False, 0.0, time.monotonic())  # (busy, share at `since`, since)

    def value(self, now: float | None = None) -> float:
        busy, share, since = self._state
        now = time.monotonic() if now is None else now
        target = 1.0 if busy else 0.0
        return target + (share - target) * math.exp(min(0.0, since - now) / self.window_s)

    def flip(self, busy: bool) -> None:
        now = time.monotonic()
        self._state = (busy, self.value(now), now)
