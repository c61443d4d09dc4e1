"""The shadow challenger's own process: scores the serving process's shadow copies at the lowest CPU
priority (SCHED_IDLE, nice 19).

Why a process of its own: a copy scored inside the serving process holds that process's GIL (a small
scikit-learn call is mostly Python) and its event loop for the whole call, so every copy delays the
champion's next requests; on a 2-core machine a few hundred copies cut the champion's saturated
throughput by about a quarter (see benchmarks/serving.py --shadow). Here the challenger's work shares
nothing with the champion but the CPUs, and at SCHED_IDLE the kernel hands those to the champion first.

Started by `shadow.ShadowWorker` as `python -m mlops_platform.serving.shadow_worker`. Frames (a 4-byte
big-endian length, then a pickle) come in on stdin and go out on stdout; fd 1 itself is pointed at
stderr, so a library's stray print cannot corrupt the channel. Both ends are this package on private
pipes, so unpickling is as safe as importing.

In:  first {"init": settings}, then any number of {"load": identity} (the serving process swapped in
     another challenger version: load it now, not on the next copy) and jobs
     {"id", "queued_at", "identity", "array" or "body" + "content_type", "ours_output",
     "ours_predictions", "keep"}, alone or in lists (the server sends the copies of a few dozen
     milliseconds in one frame); copies nobody logs come as bursts {"burst", "identity", "queued_at",
     "sizes", "array", "ours_output"}: the copies' inputs and the champion's outputs stacked.
Out: {"ready": pid, "priority": ..., "cpus": [...]} once the first version is loaded, then one result
     per job:
     {"id", "version", "latency_s", "error", "rows", "agreed"} (+ "output", "predictions" when "keep"),
     or {"id", "shed": reason}; per burst one {"burst", "version", "latencies_s", "errors", "rows",
     "agreed", "shed"}. Results are sent in bursts (a list), one per round of reading and scoring
     what was waiting (or per RESULT_BATCH copies of a backlog), so the champion's event loop is woken
     once per round, not once per copy. An idle worker looks for copies every POLL_S instead of
     waiting on its stdin (see serve_jobs: a waiting reader makes each of the server's writes cost
     the server a wakeup).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import select
import signal
import struct
import sys
import time
from typing import Any

from mlops_platform.serving.heap import freeze_startup_heap

HEADER = struct.Struct(">I")
RESULT_BATCH = 64  # most copies scored in one go
# How often an idle worker looks for copies (the server sends them every 25 ms, shadow.SEND_EVERY_S).
POLL_S = 0.025
NICE = 19
# A copy that waited longer than this for the worker's CPU is shed: its comparison would describe old
# traffic. Time spent loading a new challenger version does not count (its copies were never late).
MAX_AGE_S = 5.0
# A version that failed to load is tried again no sooner than this (its copies are shed meanwhile).
LOAD_RETRY_S = 10.0


def encode(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(data)) + data


def pack(array: Any) -> Any:
    """An array as (bytes, dtype, shape): pickling a small numpy array costs ~8 us on the champion's
    event loop, its raw bytes well under one. Object arrays (and None) go as they are."""
    if array is None or array.dtype.hasobject:
        return array
    return array.tobytes(), array.dtype.str, array.shape


def unpack(packed: Any) -> Any:
    if not isinstance(packed, tuple):
        return packed
    import numpy as np

    data, dtype, shape = packed
    return np.frombuffer(bytearray(data), dtype=dtype).reshape(shape)  # writable: torch wants that


def _threads() -> list[int]:
    """This process's thread ids (priority and affinity are per thread on Linux); [0], this thread,
    where /proc is not there."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def lower_priority() -> str:
    """The lowest CPU priority for every thread of this process (on Linux both are per thread, and the
    model's threads, BLAS's and the predict executor's, exist already; threads started later inherit
    them): SCHED_IDLE where the kernel has it, nice 19 as well (and alone elsewhere).

    Why SCHED_IDLE: a champion thread that wakes preempts a SCHED_IDLE task at once, and the scheduler
    treats a CPU running only SCHED_IDLE tasks as idle when it places the champion's threads; a nice-19
    task, by contrast, may finish its time slice (a millisecond or more) before the champion gets its
    CPU back, which shows in the champion's p99. The price: on a machine with no idle CPU the worker
    scores next to nothing, and its copies are shed and counted."""
    threads = _threads()
    idle = hasattr(os, "SCHED_IDLE")
    for tid in threads:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, NICE)
        if idle:
            try:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            except OSError:
                idle = False
    niceness = f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"
    if idle and os.sched_getscheduler(0) == os.SCHED_IDLE:
        return f"SCHED_IDLE, {niceness}"
    return niceness


def run_on(cpus: set[int]) -> None:
    """Every thread of this process on `cpus` (`mlops serve --shadow-cpus`: the CPUs the champion does
    not use, so the challenger's scoring neither preempts the champion's threads nor evicts their data
    from that CPU's caches; on Linux affinity is per thread, like priority)."""
    threads = _threads()
    try:
        for tid in threads:
            os.sched_setaffinity(tid, cpus)
    except OSError as error:  # a cpuset without them: score on the server's CPUs rather than not at all
        _logger().warning("cannot run on CPUs %s (%s); staying on the server's", sorted(cpus), error)
        for tid in threads:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, os.sched_getaffinity(os.getppid()))


def one_compute_thread() -> None:
    """Torch computes in one thread here: its default, a thread per core, spins each of them at every
    call (OpenMP waits busy before it sleeps), so a shadow burst would take every core for a moment. A
    shadow copy has no deadline to meet. (Measured at half the champion's maximum rate, torch, 5 pairs:
    p99 1.87x with the default threads; 1.41x and 1.13x in two runs with one thread. Each run had a
    250-370 ms stall in a single cell, with and without a shadow: this machine cannot tell them apart.)"""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


class Channel:
    """Frames over two raw file descriptors (the worker's end)."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = bytearray()

    def _buffered_frame(self) -> bytes | None:
        if len(self._buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self._buffer)
        end = HEADER.size + size
        if len(self._buffer) < end:
            return None
        data = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        return data

    def waiting(self) -> bool:
        """A frame, or part of one, can be read without blocking (a look, not a wait: see serve_jobs)."""
        return len(self._buffer) > 0 or bool(select.select([self.read_fd], [], [], 0)[0])

    def read(self) -> Any | None:
        """The next message; None when the serving process has closed its end (or is gone)."""
        while (data := self._buffered_frame()) is None:
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
        return pickle.loads(data)

    def write(self, message: Any) -> None:
        view = memoryview(encode(message))
        while view:
            view = view[os.write(self.write_fd, view) :]


class Scorer:
    """The challenger version the copies name, loaded here; copies waiting together scored together."""

    def __init__(self, settings: dict[str, Any]):
        import asyncio

        self.settings = settings
        self.model = None
        self.fresh_since = 0.0
        self._failed: dict[str, float] = {}
        self._loop = asyncio.new_event_loop()

    def model_for(self, identity):
        if self.model is not None and self.model.identity == identity:
            return self.model
        failed_at = self._failed.get(identity.resolved_uri)
        if failed_at is not None and time.monotonic() - failed_at < LOAD_RETRY_S:
            return None
        from mlops_platform.serving.predictors import load_served_model

        try:
            model = load_served_model(
                identity.resolved_uri,
                self.settings["tracking_uri"],
                self.settings["max_batch_size"],
                self.settings["max_wait_ms"],
                identity=identity,
                allow_unsafe=self.settings["allow_unsafe"],
            )
        except Exception as error:  # its copies are shed; serving goes on
            self._failed[identity.resolved_uri] = time.monotonic()
            _logger().warning("shadow worker could not load %s: %s", identity.resolved_uri, error)
            return None
        self._failed.pop(identity.resolved_uri, None)
        old, self.model = self.model, model
        if old is not None:
            old.close()
        self.fresh_since = time.monotonic()
        return model

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per job, in order. Validated arrays for a model whose rows stack (the server
        micro-batches it too) go to the model in one call: under a backlog, the worker's few CPU
        cycles then score many copies instead of paying one call's fixed cost per copy."""
        results: dict[int, dict[str, Any]] = {}
        stackable: dict[Any, list[dict[str, Any]]] = {}
        for job in jobs:
            job["array"], job["ours_output"] = unpack(job["array"]), unpack(job["ours_output"])
            if time.monotonic() - max(job["queued_at"], self.fresh_since) > MAX_AGE_S:
                results[job["id"]] = {"id": job["id"], "shed": f"waited more than {MAX_AGE_S:g} s"}
                continue
            model = self.model_for(job["identity"])
            if model is None:
                results[job["id"]] = {
                    "id": job["id"],
                    "shed": f"challenger {job['identity'].resolved_uri} not loaded",
                }
            elif job["array"] is not None and model.batcher is not None:
                stackable.setdefault(job["identity"], []).append(job)
            else:
                results[job["id"]] = self._one(model, job)
        for identity, group in stackable.items():
            results.update((r["id"], r) for r in self._stacked(self.model_for(identity), group))
        return [results[job["id"]] for job in jobs]

    def _one(self, model, job: dict[str, Any]) -> dict[str, Any]:
        from mlops_platform.serving.errors import RequestError
        from mlops_platform.serving.scoring import score

        started = time.perf_counter()
        if job["array"] is not None:
            # Same signature as the champion: its validated array is the challenger's input too.
            output, failure = _predict(model, job["array"])
            return _result(model, job, output, None, time.perf_counter() - started, failure)
        try:
            theirs = self._loop.run_until_complete(score(model, job["body"], job["content_type"]))
        except RequestError as error:
            return _result(model, job, None, None, time.perf_counter() - started, error.message[:300])
        failure = None if theirs.status == 200 else theirs.body.decode(errors="replace")[:300]
        return _result(model, job, theirs.output, theirs.predictions, time.perf_counter() - started, failure)

    def _stacked(self, model, group: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import numpy as np

        sizes = [len(job["array"]) for job in group]
        if model is None or len(group) == 1 or sum(sizes) > model.max_batch_size:
            return [self._one(model, job) if model else _unloaded(job) for job in group]
        started = time.perf_counter()
        output, failure = _predict(model, np.concatenate([job["array"] for job in group]))
        if failure is not None:  # one copy's rows must not fail the others': each alone
            return [self._one(model, job) for job in group]
        latency = time.perf_counter() - started
        bounds = np.cumsum([0, *sizes])
        logged = any(job["keep"] for job in group)
        agreed = None if logged else _agreed_per_copy([job["ours_output"] for job in group], output, bounds)
        if agreed is None:
            return [
                _result(model, job, output[bounds[i] : bounds[i + 1]], None, latency, None)
                for i, job in enumerate(group)
            ]
        # Nothing to log: the counts are all the server needs, computed for the whole burst at once
        # (per copy, the arg-max and comparison cost more than the model's share of the call).
        version = model.identity.version
        return [
            {
                "id": job["id"],
                "version": version,
                "latency_s": latency,
                "error": None,
                "rows": size,
                "agreed": n,
            }
            for job, size, n in zip(group, sizes, agreed.tolist(), strict=True)
        ]


def _agreed_per_copy(ours_outputs: list[Any], theirs: Any, bounds: Any) -> Any | None:
    """Rows on which the two models agree, per copy, for copies stacked into one call (`bounds`: where
    each copy's rows start and end); None when the champion's outputs cannot be stacked the same way
    (records, or shapes that differ), and each copy is then compared alone."""
    import numpy as np

    from mlops_platform.serving.challenger import row_labels

    if any(output is None or output.dtype.hasobject for output in ours_outputs):
        return None
    try:
        ours = np.concatenate(ours_outputs)
    except ValueError:
        return None
    ours_labels, their_labels = row_labels(ours), row_labels(theirs)
    if ours_labels.shape != their_labels.shape or len(ours_labels) != bounds[-1]:
        return None
    same = (ours_labels == their_labels).astype(np.int64)
    return np.add.reduceat(same, bounds[:-1]) if len(same) else np.zeros(len(bounds) - 1, np.int64)


def _unloaded(job: dict[str, Any]) -> dict[str, Any]:
    return {"id": job["id"], "shed": f"challenger {job['identity'].resolved_uri} not loaded"}


def _predict(model, array) -> tuple[Any, str | None]:
    """The model's raw output, in calls of at most max_batch_size rows, or why it failed (the
    message the server would give the client)."""
    import numpy as np

    try:
        step = model.max_batch_size
        parts = [model.predict_array(array[start : start + step]) for start in range(0, len(array), step)]
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), None
    except Exception as error:
        return None, f"the model could not evaluate this input: {type(error).__name__}: {str(error)[:200]}"


def _result(
    model, job: dict[str, Any], output, predictions: bytes | None, latency: float, failure: str | None
):
    """What goes back for one copy: latency, error, the agreement counts, the predictions if logged."""
    import orjson

    from mlops_platform.serving.challenger import agreement_counts

    result: dict[str, Any] = {
        "id": job["id"],
        "version": model.identity.version,
        "latency_s": latency,
        "error": failure,
        "rows": 0,
        "agreed": 0,
    }
    if failure is not None:
        return result
    ours_output, ours_predictions = job["ours_output"], job["ours_predictions"]
    on_outputs = ours_output is not None and output is not None
    if predictions is None and output is not None and (job["keep"] or not on_outputs):
        predictions = model.output_json(output)
    if on_outputs:
        result["rows"], result["agreed"] = agreement_counts(ours_output, output)
    elif ours_predictions is not None and predictions is not None:
        result["rows"], result["agreed"] = agreement_counts(
            orjson.loads(ours_predictions), orjson.loads(predictions)
        )
    if job["keep"]:
        result.update(output=output, predictions=predictions)
    return result


def _logger():
    import logging

    return logging.getLogger("mlops_platform.serving")


def expand_bursts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs, with each burst of counted copies (shadow.CountedBurst) taken apart into a job per copy,
    whose id is (burst id, index)."""
    import numpy as np

    jobs: list[dict[str, Any]] = []
    for message in messages:
        if "burst" not in message:
            jobs.append(message)
            continue
        array, ours = unpack(message["array"]), unpack(message["ours_output"])
        bounds = np.cumsum([0, *message["sizes"]]).tolist()
        jobs += (
            {
                "id": (message["burst"], index),
                "queued_at": message["queued_at"],
                "identity": message["identity"],
                "array": array[start:stop],
                "body": None,
                "content_type": None,
                "ours_output": ours[start:stop],
                "ours_predictions": None,
                "keep": False,
            }
            for index, (start, stop) in enumerate(itertools.pairwise(bounds))
        )
    return jobs


def counted(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results, with those of a burst's copies folded into one per burst: what the server counts
    (latencies, errors, shed copies, agreement), not a message per copy."""
    others: list[dict[str, Any]] = []
    bursts: dict[int, dict[str, Any]] = {}
    for result in results:
        if not isinstance(result["id"], tuple):
            others.append(result)
            continue
        burst_id = result["id"][0]
        burst = bursts.get(burst_id)
        if burst is None:
            burst = bursts[burst_id] = {
                "burst": burst_id,
                "version": None,
                "latencies_s": [],
                "errors": [],
                "rows": 0,
                "agreed": 0,
                "shed": 0,
            }
        if "shed" in result:
            burst["shed"] += 1
            continue
        burst["version"] = result["version"]
        if result["error"] is not None:
            burst["errors"].append(result["error"])
        else:
            burst["latencies_s"].append(result["latency_s"])
            burst["rows"] += result["rows"]
            burst["agreed"] += result["agreed"]
    return others + list(bursts.values())


def serve_jobs(channel: Channel) -> None:
    init = channel.read()
    if init is None:
        return
    settings = init["init"]
    if settings.get("cpus"):
        # Before the model loads: the threads torch and BLAS start then inherit this process's CPUs.
        run_on(set(settings["cpus"]))
    scorer = Scorer(settings)
    scorer.model_for(settings["identity"])  # loaded at normal priority: the server waits for it
    one_compute_thread()
    freeze_startup_heap()  # a full GC pass over torch's heap is CPU the champion may need
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    channel.write({"ready": os.getpid(), "priority": lower_priority(), "cpus": cpus})
    while True:
        # Sleep, then look: a reader blocked on the pipe (select, read) is woken by every write, and that
        # wakeup, an interrupt sent to the worker's CPU (a VM exit here), is paid by the writer: the
        # champion's event loop. Looking every POLL_S, the server's writes only fill the pipe's buffer.
        while not channel.waiting():
            time.sleep(POLL_S)
        # Everything already waiting is read and scored together (at most RESULT_BATCH copies a call),
        # and the results go back as one frame per round: the server's loop wakes once per round.
        results: list[dict[str, Any]] = []
        jobs: list[dict[str, Any]] = []
        message = channel.read()
        while message is not None:
            if isinstance(message, list):
                jobs += expand_bursts(message)
            elif "load" in message:
                results += counted(scorer.run(jobs))
                jobs = []
                scorer.model_for(message["load"])
            else:
                jobs += expand_bursts([message])
            if len(jobs) >= RESULT_BATCH:  # a backlog: its results go back as they are ready
                channel.write(results + counted(scorer.run(jobs)))
                results, jobs = [], []
            if not channel.waiting():
                break
            message = channel.read()
        results += counted(scorer.run(jobs))
        if results:
            channel.write(results)
        if message is None:
            return


def main() -> None:
    # The worker's life is its stdin: it ends when the serving process closes it or dies (any way), and
    # is killed outright when it must stop at once. Signals sent to the server's whole process group
    # (Ctrl-C, a supervisor's SIGTERM) are the server's to handle, not the worker's.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The channel gets private copies of fds 0 and 1; fd 1 becomes stderr and fd 0 /dev/null.
    channel = Channel(os.dup(0), os.dup(1))
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    import logging

    package_logger = logging.getLogger("mlops_platform")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s (shadow worker): %(message)s"))
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    package_logger.propagate = False
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    serve_jobs(channel)


if __name__ == "__main__":
    main()
