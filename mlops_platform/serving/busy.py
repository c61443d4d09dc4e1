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
    """An exponential moving average (time constant `window_s`) of a 0/1 busy signal: 1 while requests
    are in flight.

    Every request's path marks its start and end (`started`, `finished`): a clock read and an addition
    each, and the clock is the request's latency too. The average is brought up to date when read
    (`value`, every few milliseconds by the shadow's admission test), from the busy seconds since the
    previous reading, taken as spread evenly over that interval: over 5 ms, against a time constant
    of 250, that weighs them within 1 % of the exact average. Used from the event loop's thread only.
    """

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self.in_flight = 0
        self._busy_since = 0.0  # when in_flight last rose from 0
        self._busy_s = 0.0  # busy seconds since the last reading
        self._share = 0.0  # the average at the last reading
        self._read_at = time.monotonic()

    def started(self) -> float:
        """A request starts; returns the clock (time.monotonic)."""
        now = time.monotonic()
        if not self.in_flight:
            self._busy_since = now
        self.in_flight += 1
        return now

    def finished(self) -> float:
        """A request ends; returns the clock (time.monotonic)."""
        now = time.monotonic()
        self.in_flight -= 1
        if not self.in_flight:
            self._busy_s += now - self._busy_since
        return now

    def value(self, now: float | None = None) -> float:
        """The average at `now` (default: the clock), folding in the busy time since the last reading."""
        now = time.monotonic() if now is None else now
        elapsed = now - self._read_at
        if elapsed <= 0:
            return self._share
        busy = self._busy_s
        if self.in_flight:  # the busy stretch under way counts up to now, and from now at the next reading
            busy += max(0.0, now - self._busy_since)
            self._busy_since = now
        self._busy_s = 0.0
        self._read_at = now
        mean = min(1.0, busy / elapsed)
        self._share = mean + (self._share - mean) * math.exp(-elapsed / self.window_s)
        return self._share
