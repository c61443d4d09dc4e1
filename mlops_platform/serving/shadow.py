"""Shadow work, the serving process's side: copies go to a worker process (shadow_worker.py), results
come back to the prediction log and /health.

The champion never waits for any of it. A copy is accepted only while the champion is not saturated
(it had requests in flight for less than `--shadow-max-busy` of the recent past), while the worker is
up, and while fewer than `capacity` copies await their result; anything else is shed and counted.
Accepting a copy appends it to an outbox; the outbox goes to the worker as one pipe write every
SEND_EVERY_S (sooner when `capacity / 4` copies wait), and the worker scores each burst in one model
call. The worker looks for bursts every 25 ms (shadow_worker.POLL_S) instead of waiting on the pipe,
so a write costs the champion a copy into the pipe's buffer, not the wakeup of another process.
Results also arrive in bursts and cost the champion a dictionary update each. Copies nobody logs
(no --log-predictions: only their counts matter) skip even that: a burst of them goes as one stacked
array and comes back as one count (offer_counted). The worker runs at SCHED_IDLE (and nice 19), so it
takes CPU the champion does not need.
A worker that dies takes only its copies with it: they are shed, and a new worker starts after a
delay that doubles with each consecutive failure.

Why the busy gate: on this project's 2-vCPU machines a worker costs a busy champion throughput even at
SCHED_IDLE and with CPU to spare (wakeups, caches, the VM host's cores): measured with
`benchmarks/serving.py --shadow`, a saturated champion lost 20-30 % to a worker scoring ~3 % of the
traffic, one copy per write. So a busy champion sheds every copy (the gate reads 0.88-1.00 at
saturation, 0.68-0.77 at half the maximum rate; see busy.py), and the shadow scores the traffic of
the quieter periods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_platform.serving.busy import BusyShare
from mlops_platform.serving.shadow_worker import HEADER, encode, pack

logger = logging.getLogger("mlops_platform.serving")

# Copies bigger than this are pickled in a thread and sent alone, not on the event loop.
OFFLOAD_BYTES = 256 * 1024
# Accepted copies wait at most this long in the outbox before they go to the worker in one write.
SEND_EVERY_S = 0.025
# At most this many bytes of copies wait in the pipe's user-space buffer (a starved worker reads none).
MAX_BUFFERED_BYTES = 32 * 1024 * 1024
# At most this many bytes of requests are held for copies awaiting their result (the prediction log
# needs each request's answer when its copy's result comes back).
MAX_PENDING_BYTES = 64 * 1024 * 1024
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 3.0
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0
# The admission test's slower parts (the champion's busy share, the bytes waiting) are read at most this
# often (a fiftieth of the busy share's time constant; a read costs about as much as the rest of the
# test, and at 2,400 requests a second one request in twelve pays it); the queue's room is counted at
# every copy.
GATE_EVERY_S = 0.005


@dataclass
class ShadowJob:
    """A request the champion answered, on its way to the challenger."""

    message: dict[str, Any]  # what the worker needs (shadow_worker's job, without its id)
    size: int  # bytes of the request's payload: big ones are pickled off the event loop
    finish: Callable[[dict[str, Any]], None]  # the worker's result
    shed: Callable[[], None]  # never scored


class CountedBurst:
    """Counted copies of one challenger version waiting to go to the worker together: their inputs and
    the champion's outputs, stacked into one array each when sent (each copy's rows told apart by
    `sizes`). A copy costs the request two appends; whether the copies stack is sorted out once per
    burst, when it is sent (`parts`)."""

    def __init__(self, identity: Any):
        self.identity = identity
        self.queued_at = time.monotonic()
        self.inputs: list[np.ndarray] = []
        self.ours: list[np.ndarray] = []
        self._stacked: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, inputs: np.ndarray, ours: np.ndarray) -> None:
        self.inputs.append(inputs)
        self.ours.append(ours)

    def parts(self) -> list[CountedBurst]:
        """This burst as bursts whose copies stack: itself, unless their trailing shapes differ (a
        champion reloaded mid-burst with another output, a signature with dimensions of any size).

        Stacking is tried first, one numpy call per array, not a check per copy. Every copy of a burst
        feeds one challenger version the array its signature asks for (app.py's `same_input`), so
        the inputs share a dtype; champion outputs of two dtypes (a reload) stack at their common
        dtype, whose values compare as the originals do."""
        try:
            self._stacked = (np.concatenate(self.inputs), np.concatenate(self.ours))
            return [self]
        except (ValueError, TypeError):  # shapes that do not stack; dtypes without a common one
            pass
        kinds: dict[tuple, CountedBurst] = {}
        for inputs, ours in zip(self.inputs, self.ours, strict=True):
            kind = (inputs.dtype, inputs.shape[1:], ours.dtype, ours.shape[1:])
            part = kinds.get(kind)
            if part is None:
                part = kinds[kind] = CountedBurst(self.identity)
                part.queued_at = self.queued_at
            part.add(inputs, ours)
        return list(kinds.values())

    def stacked(self) -> tuple[np.ndarray, np.ndarray]:
        """The copies' inputs and the champion's outputs, one array each (copies that stack: `parts`)."""
        if self._stacked is None:
            self._stacked = (np.concatenate(self.inputs), np.concatenate(self.ours))
        return self._stacked

    def nbytes(self) -> int:
        inputs, ours = self.stacked()
        return inputs.nbytes + ours.nbytes

    def message(self, burst_id: int) -> dict[str, Any]:
        """What the worker gets (shadow_worker's burst; the copies stack: see `parts`)."""
        inputs, ours = self.stacked()
        return {
            "burst": burst_id,
            "identity": self.identity,
            "queued_at": self.queued_at,
            "sizes": [len(a) for a in self.inputs],
            "array": pack(inputs),
            "ours_output": pack(ours),
        }


class ShadowWorker:
    """Bounded, lowest-priority shadow scoring in a process of its own."""

    def __init__(
        self,
        capacity: int,
        settings: Callable[[], dict[str, Any]],
        max_busy: float,
        on_counts: Callable[[dict[str, Any]], None] = lambda result: None,
        champion_busy: BusyShare | None = None,
    ):
        """`max_busy`: the champion counts as saturated, and copies are shed, while it had requests in
        flight for more than this share of the recent past (`champion_busy`, which the champion's
        request path keeps: busy.py). `on_counts`: a burst of counted copies came back
        (shadow_worker's burst result)."""
        self.capacity = capacity
        self._send_at = max(1, capacity // 4)  # copies waiting in the outbox that are sent at once
        self.on_counts = on_counts
        self.max_busy = max_busy
        self._settings = settings  # the worker's init message, built at each (re)start
        self.champion_busy_share = champion_busy or BusyShare()
        self.last_champion_busy: float | None = None  # at the last copy's admission test, for /health
        self._gate_closed = False  # the champion busy or too many bytes waiting, as last read
        self._gate_due = 0.0  # when to read them again
        self._outbox: list[dict[str, Any]] = []
        self._send_timer: asyncio.TimerHandle | None = None
        self._pending: dict[int, ShadowJob] = {}
        self._pending_bytes = 0
        # Copies nobody logs (offer_counted): gathered into one burst, sent as one array, answered with
        # the burst's counts only; `_bursts` holds each sent burst's (copies, bytes) until then.
        self._burst: CountedBurst | None = None
        self._bursts: dict[int, tuple[int, int]] = {}
        self._counted_waiting = 0  # copies in `_burst` and `_bursts`
        self._next_id = 0
        self._process: asyncio.subprocess.Process | None = None
        self._ready = False
        self._stopping = False
        self._reader: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.priority: str | None = None
        self.cpus: list[int] | None = None  # the worker's CPUs, as it reported them
        self.queued = 0
        self.scored = 0
        self.shed = 0
        self.restarts = 0
        self._failures = 0  # consecutive worker exits without a result in between
        self.last_exit: str | None = None

    def full(self) -> bool:
        """No room for another copy: the champion is saturated, no worker is ready, or the worker has
        `capacity` copies (or MAX_PENDING_BYTES of them, or MAX_BUFFERED_BYTES not yet written) not
        yet answered. On every request's path: the busy share and the byte counts are read at most
        once per GATE_EVERY_S (a fraction of the share's time constant, busy.py)."""
        now = time.monotonic()
        if now >= self._gate_due:
            self._gate_due = now + GATE_EVERY_S
            champion_busy = self.last_champion_busy = self.champion_busy_share.value(now)
            process = self._process
            unwritten = process.stdin.transport.get_write_buffer_size() if process and self._ready else 0
            self._gate_closed = (
                champion_busy > self.max_busy
                or self._pending_bytes > MAX_PENDING_BYTES
                or unwritten > MAX_BUFFERED_BYTES
            )
        return (
            not self._ready
            or self._gate_closed
            or len(self._pending) + self._counted_waiting >= self.capacity
        )

    def offer(self, job: ShadowJob) -> None:
        """Send a copy (the caller checked `full()`)."""
        job_id = self._next_id
        self._next_id += 1
        self._pending[job_id] = job
        self._pending_bytes += job.size
        self.queued += 1
        message = {"id": job_id, "queued_at": time.monotonic(), **job.message}
        if job.size > OFFLOAD_BYTES:
            self._spawn(self._send_large(message))
            return
        self._outbox.append(message)
        self._send_soon(len(self._burst.inputs) if self._burst is not None else 0)

    def offer_counted(self, identity: Any, inputs: np.ndarray, ours: np.ndarray) -> None:
        """Send a copy whose result only counts (no prediction log): the champion's validated `inputs`
        and raw output `ours`. Such copies travel as one array per burst and come back as the burst's
        counts, so a copy costs the champion two appends, not a message of its own each way (~45 us a
        copy that way, most of a 1-row request's shadow cost; caller checked `full()`). Their bytes
        count against MAX_PENDING_BYTES from the burst's sending on."""
        burst = self._burst
        if burst is None or burst.identity is not identity:
            if burst is not None:
                self._send_outbox()  # a copy for another version starts a burst of its own
            burst = self._burst = CountedBurst(identity)
        burst.inputs.append(inputs)  # CountedBurst.add, without a call: this is on the request's path
        burst.ours.append(ours)
        self._counted_waiting += 1
        self.queued += 1
        self._send_soon(len(burst.inputs))

    def _send_soon(self, waiting: int) -> None:
        if waiting + len(self._outbox) >= self._send_at:
            self._send_outbox()
        elif self._send_timer is None:
            self._send_timer = self._loop.call_later(SEND_EVERY_S, self._send_outbox)

    def _send_outbox(self) -> None:
        """The waiting copies, as one frame (a list) and one write."""
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        outbox, self._outbox = self._outbox, []
        burst, self._burst = self._burst, None
        for part in burst.parts() if burst is not None else ():
            burst_id = self._next_id
            self._next_id += 1
            size = part.nbytes()
            self._bursts[burst_id] = (len(part.inputs), size)
            self._pending_bytes += size
            outbox.append(part.message(burst_id))
        if outbox and self._ready:  # else the worker is gone: _drop_pending sheds them
            self._process.stdin.write(encode(outbox))

    def preload(self, identity: Any) -> None:
        """The challenger's alias moved (called from the loader's thread): the worker loads the new
        version now, not when the next copy names it."""
        if self._loop is not None and not self._stopping:
            self._loop.call_soon_threadsafe(self._send_load, identity)

    def _send_load(self, identity: Any) -> None:
        if self._ready:
            # Copies accepted before the move go first: each copy names its version, and a copy of
            # the old one arriving after this message would make the worker load the old one again.
            self._send_outbox()
            self._process.stdin.write(encode({"load": identity}))

    async def _send_large(self, message: dict[str, Any]) -> None:
        frame = await asyncio.to_thread(encode, message)
        if self._ready and message["id"] in self._pending:
            self._process.stdin.write(frame)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # The worker's life.

    async def start(self) -> None:
        """Start the worker and wait until it has loaded the challenger (at most START_TIMEOUT_S:
        serving does not wait longer for its shadow, whose copies are shed meanwhile)."""
        self._loop = asyncio.get_running_loop()
        ready = self._loop.create_future()
        self._reader = self._loop.create_task(self._run(ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_TIMEOUT_S)
        except TimeoutError:
            logger.warning(
                "shadow worker not ready after %.0f s; shadow copies are shed until it is", START_TIMEOUT_S
            )

    async def _run(self, first_ready: asyncio.Future) -> None:
        """Start the worker, read its results until it exits, start another; until stop()."""
        while not self._stopping:
            try:
                await self._serve_one(first_ready)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a worker that cannot start must not stop serving
                self.last_exit = f"could not start: {error}"[:500]
                logger.warning("shadow worker could not start: %s", error)
            self._drop_pending()
            if not first_ready.done():
                first_ready.set_result(None)
            if self._stopping:
                return
            self._failures += 1
            self.restarts += 1
            delay = min(RESTART_DELAY_S * 2 ** (self._failures - 1), MAX_RESTART_DELAY_S)
            logger.warning(
                "shadow worker gone (%s), its copies shed; next one in %.0f s", self.last_exit, delay
            )
            await asyncio.sleep(delay)

    async def _serve_one(self, first_ready: asyncio.Future) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mlops_platform.serving.shadow_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._process = process
        try:
            process.stdin.write(encode({"init": self._settings()}))
            while True:
                try:
                    header = await process.stdout.readexactly(HEADER.size)
                    message = pickle.loads(await process.stdout.readexactly(HEADER.unpack(header)[0]))
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                if isinstance(message, list):
                    self._results(message)
                elif "ready" in message:
                    self._ready = True
                    self.priority = message["priority"]
                    self.cpus = message.get("cpus")
                    logger.info(
                        "shadow worker ready on pid %d (%s, CPUs %s)",
                        message["ready"],
                        self.priority,
                        self.cpus,
                    )
                    if not first_ready.done():
                        first_ready.set_result(None)
        finally:
            self._ready = False
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            code = await process.wait()
            self.last_exit = f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"

    def _results(self, results: list[dict[str, Any]]) -> None:
        self._failures = 0
        for result in results:
            if "burst" in result:
                self._burst_result(result)
                continue
            job = self._pending.pop(result["id"], None)
            if job is None:
                continue
            self._pending_bytes -= job.size
            if "shed" in result:
                self.shed += 1
                job.shed()
            else:
                self.scored += 1
                try:
                    job.finish(result)
                except Exception as error:  # bookkeeping must never take serving down
                    logger.warning("shadow result not recorded: %s", error)

    def _burst_result(self, result: dict[str, Any]) -> None:
        sent = self._bursts.pop(result["burst"], None)
        if sent is None:
            return
        copies, size = sent
        self._counted_waiting -= copies
        self._pending_bytes -= size
        self.shed += result["shed"]
        self.scored += len(result["latencies_s"]) + len(result["errors"])
        try:
            self.on_counts(result)
        except Exception as error:  # bookkeeping must never take serving down
            logger.warning("shadow counts not recorded: %s", error)

    def _drop_pending(self) -> None:
        """Copies the worker never answered are shed, so every request keeps its log line."""
        self.shed += self._counted_waiting
        self._counted_waiting = 0
        self._burst = None
        self._bursts = {}
        self._outbox = []  # a pending send timer then finds it empty
        pending, self._pending = self._pending, {}
        self._pending_bytes = 0
        for job in pending.values():
            self.shed += 1
            job.shed()

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            process.stdin.close()  # the worker exits at its next read; a busy one is killed
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, STOP_TIMEOUT_S)
            except TimeoutError:
                self._reader.cancel()
            except asyncio.CancelledError:
                pass
        for task in list(self._tasks):
            task.cancel()
        self._drop_pending()

    def report(self) -> dict[str, Any]:
        process = self._process
        return {
            "queued": self.queued,
            "scored": self.scored,
            "shed": self.shed,
            "waiting": len(self._pending) + self._counted_waiting,
            "champion_busy_at_last_copy": self.last_champion_busy and round(self.last_champion_busy, 3),
            "worker": {
                "pid": process.pid if process is not None and process.returncode is None else None,
                "ready": self._ready,
                "priority": self.priority,
                "cpus": self.cpus,
                "restarts": self.restarts,
                "last_exit": self.last_exit,
            },
        }
