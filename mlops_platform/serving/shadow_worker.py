"""The shadow challenger's own process: scores the serving process's shadow copies at nice 19.

Why a process of its own: a copy scored inside the serving process holds that process's GIL (a small
scikit-learn call is mostly Python) and its event loop for the whole call, so every copy delays the
champion's next requests; on a 2-core machine a few hundred copies cut the champion's saturated
throughput by about a quarter (see benchmarks/serving.py --shadow). Here the challenger's work shares
nothing with the champion but the CPUs, and at nice 19 the kernel hands those to the champion first.

Started by `shadow.ShadowWorker` as `python -m mlops_platform.serving.shadow_worker`. Frames (a 4-byte
big-endian length, then a pickle) come in on stdin and go out on stdout; fd 1 itself is pointed at
stderr, so a library's stray print cannot corrupt the channel. Both ends are this package on private
pipes, so unpickling is as safe as importing.

In:  first {"init": settings}, then any number of {"load": identity} (the serving process swapped in
     another challenger version: load it now, not on the next copy) and jobs
     {"id", "queued_at", "identity", "array" or "body" + "content_type", "ours_output",
     "ours_predictions", "keep"}.
Out: {"ready": pid, "priority": ...} once the first version is loaded, then one result per job:
     {"id", "version", "latency_s", "error", "rows", "agreed"} (+ "output", "predictions" when "keep"),
     or {"id", "shed": reason}. Results are sent in bursts: whenever no job is waiting, or every
     `RESULT_BATCH` results, so a busy champion is woken once per burst, not once per copy.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import sys
import time
from typing import Any

HEADER = struct.Struct(">I")
RESULT_BATCH = 64
NICE = 19
# A copy that waited longer than this for the worker's CPU is shed: its comparison would describe old
# traffic. Time spent loading a new challenger version does not count (its copies were never late).
MAX_AGE_S = 5.0
# A version that failed to load is tried again no sooner than this (its copies are shed meanwhile).
LOAD_RETRY_S = 10.0


def encode(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(data)) + data


def lower_priority() -> str:
    """nice 19 for every thread of this process: on Linux niceness is per thread, and the model's
    threads (BLAS, the predict executor) exist already. Threads started later inherit it."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, NICE)
    return f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"


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
        """A frame, or part of one, can be read without blocking."""
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
    """The challenger version the copies name, loaded here, and one copy scored at a time."""

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

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        if time.monotonic() - max(job["queued_at"], self.fresh_since) > MAX_AGE_S:
            return {"id": job["id"], "shed": f"waited more than {MAX_AGE_S:g} s"}
        model = self.model_for(job["identity"])
        if model is None:
            return {"id": job["id"], "shed": f"challenger {job['identity'].resolved_uri} not loaded"}
        return self._loop.run_until_complete(self._score(model, job))

    async def _score(self, model, job: dict[str, Any]) -> dict[str, Any]:
        import orjson

        from mlops_platform.serving.challenger import agreement_counts
        from mlops_platform.serving.errors import RequestError
        from mlops_platform.serving.scoring import Answer, predict, score

        started = time.perf_counter()
        try:
            if job["array"] is not None:
                # Same signature as the champion: its validated array is the challenger's input too.
                output = await predict(model, job["array"])
                theirs = Answer(b"", 200, None, output, model.output_json(output))
            else:
                theirs = await score(model, job["body"], job["content_type"])
            failure = None if theirs.status == 200 else theirs.body.decode(errors="replace")[:300]
        except RequestError as error:
            theirs, failure = None, error.message[:300]
        result: dict[str, Any] = {
            "id": job["id"],
            "version": model.identity.version,
            "latency_s": time.perf_counter() - started,
            "error": failure,
            "rows": 0,
            "agreed": 0,
        }
        if failure is not None:
            return result
        ours_output, ours_predictions = job["ours_output"], job["ours_predictions"]
        if ours_output is not None and theirs.output is not None and not model.records_output:
            result["rows"], result["agreed"] = agreement_counts(ours_output, theirs.output)
        elif ours_predictions is not None and theirs.predictions is not None:
            result["rows"], result["agreed"] = agreement_counts(
                orjson.loads(ours_predictions), orjson.loads(theirs.predictions)
            )
        if job["keep"]:
            result.update(output=theirs.output, predictions=theirs.predictions)
        return result


def _logger():
    import logging

    return logging.getLogger("mlops_platform.serving")


def serve_jobs(channel: Channel) -> None:
    init = channel.read()
    if init is None:
        return
    settings = init["init"]
    scorer = Scorer(settings)
    scorer.model_for(settings["identity"])  # loaded at normal priority: the server waits for it
    channel.write({"ready": os.getpid(), "priority": lower_priority()})
    results: list[dict[str, Any]] = []
    while True:
        if results and (len(results) >= RESULT_BATCH or not channel.waiting()):
            channel.write(results)
            results = []
        message = channel.read()
        if message is None:
            return
        if "load" in message:
            scorer.model_for(message["load"])
            continue
        results.append(scorer.run(message))


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
