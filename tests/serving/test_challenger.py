"""Shadow and canary serving end to end: two registered versions behind one real `mlops serve`, the
answers, headers, prediction log, /health, alias moves of the challenger, the canary guard, and
`mlops serve report` logging to MLflow."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import psutil
import pytest
import requests
from click.testing import CliRunner
from serving_helpers import ServerProcess, digits_frame, log_sklearn, set_champion

from mlops_platform.cli import cli

WAIT_S = 90
pytestmark = pytest.mark.slow


def _set_alias(uri: str, name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(uri, registry_uri=uri).set_registered_model_alias(name, alias, version)


def _wait(predicate, server: ServerProcess, what: str):
    deadline = time.monotonic() + WAIT_S
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}:\n{server.log_text()[-3000:]}"
        time.sleep(0.2)


def _log_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _serve(versions, tmp_path, log_path, challenger_alias: str, mode: str, *options: str) -> ServerProcess:
    """`mlops serve` of @champion with `models:/NAME@challenger_alias` beside it in `mode`, logging
    predictions to `log_path`."""
    name = versions["name"]
    return ServerProcess(
        f"models:/{name}@champion",
        versions["uri"],
        tmp_path / "serve.log",
        "--challenger",
        f"models:/{name}@{challenger_alias}",
        "--mode",
        mode,
        *options,
        "--log-predictions",
        str(log_path),
    ).wait_ready()


@pytest.fixture(scope="module")
def versions(sqlite_server):
    """v1 learned the digits, v2 learned label+1 (disagrees everywhere), v3 is v1 with another C (agrees
    almost everywhere), v4 lacks a column (fails on every full request)."""
    uri = sqlite_server.url
    name = f"serve-ab-{uuid.uuid4().hex[:6]}"
    v1 = log_sklearn(uri, name)
    v2 = log_sklearn(uri, name, label_shift=1)
    v3 = log_sklearn(uri, name, c=0.5)
    v4 = log_sklearn(uri, name, columns=63)
    set_champion(uri, name, v1)
    return {"uri": uri, "name": name, "v1": v1, "v2": v2, "v3": v3, "v4": v4}


def test_shadow_scores_every_request_off_the_response_path_and_reports(versions, tmp_path, monkeypatch):
    uri, name = versions["uri"], versions["name"]
    _set_alias(uri, name, "challenger", versions["v2"])
    log_path = tmp_path / "predictions.jsonl"
    server = _serve(versions, tmp_path, log_path, "challenger", "shadow", "--reload-interval", "0.3")
    try:
        x, y = digits_frame()
        session = requests.Session()
        answers = []
        for i in range(30):
            rows = x.iloc[i * 3 : i * 3 + 3]
            response = session.post(
                f"{server.url}/invocations",
                json={"dataframe_split": rows.to_dict(orient="split")},
                timeout=30,
            )
            assert response.status_code == 200
            assert response.headers["X-Model-Version"] == versions["v1"]
            assert response.headers["X-Model-Role"] == "champion"
            answers.append((response.headers["X-Request-Id"], rows, response.json()["predictions"]))
        # The champion answered: v1's labels, never the challenger's shifted ones.
        correct = sum(p == t for _, rows, ps in answers for p, t in zip(ps, y.loc[rows.index], strict=True))
        assert correct >= 80
        health = _wait(
            lambda: (h := server.get("/health").json())["shadow"]["scored"] + h["shadow"]["shed"] >= 30 and h,
            server,
            "shadow work never finished",
        )
        assert health["mode"] == "shadow" and health["challenger"]["model_version"] == versions["v2"]
        assert health["versions"]["champion"]["requests"] == 30
        assert health["versions"]["champion"]["p99_ms"] is not None
        assert health["versions"]["challenger"]["requests"] == health["shadow"]["scored"] > 0
        assert health["agreement"]["rate"] <= 0.2  # v2 answers label + 1

        _wait(lambda: len(_log_lines(log_path)) >= 30, server, "prediction log not flushed")
        lines = {line["request_id"]: line for line in _log_lines(log_path)}
        for request_id, _, predictions in answers:
            line = lines[request_id]
            assert line["model_version"] == versions["v1"] and line["role"] == "champion"
            assert line["predictions"] == predictions and line["shadow"]["model_version"] == versions["v2"]
            if not line["shadow"].get("shed"):
                assert line["shadow"]["predictions"] == [(p + 1) % 10 for p in predictions]

        # The challenger alias moves: the server follows it, and agreement climbs with a close model.
        _set_alias(uri, name, "challenger", versions["v3"])
        _wait(
            lambda: server.get("/health").json()["challenger"]["model_version"] == versions["v3"],
            server,
            "challenger alias move not followed",
        )
        for i in range(20):
            rows = x.iloc[200 + i * 5 : 205 + i * 5]
            session.post(f"{server.url}/invocations", json={"dataframe_split": rows.to_dict(orient="split")})
        _wait(lambda: server.get("/health").json()["shadow"]["waiting"] == 0, server, "shadow queue")
        # The same report from the running server's counters (no MLflow run here: --no-mlflow).
        live = CliRunner().invoke(cli, ["serve", "report", "--url", server.url, "--no-mlflow"])
        assert live.exit_code == 0, live.output
        live_summary = json.loads(live.output[live.output.index("{") :])
        health = server.get("/health").json()
        assert live_summary["mode"] == "shadow" and live_summary["source"] == server.url
        assert live_summary["versions"]["champion"]["requests"] == 50
        assert (
            live_summary["agreement"] == health["agreement"]
            and live_summary["shed"] == health["shadow"]["shed"]
        )
    finally:
        server.stop()
    refused = CliRunner().invoke(cli, ["serve", "report", "--url", server.url, "--no-mlflow"])
    assert refused.exit_code == 1 and f"no mlops serve answered {server.url}/health" in refused.output

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(
        cli, ["serve", "report", "--log", str(log_path), "--experiment", f"ab-{name}"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["mode"] == "shadow" and summary["requests"] == 50
    assert summary["versions"]["champion"]["model_version"] == versions["v1"]
    assert summary["versions"]["challenger"]["model_version"] == f"{versions['v2']},{versions['v3']}"
    assert summary["versions"]["champion"]["p50_ms"] <= summary["versions"]["champion"]["p99_ms"]
    assert 0.2 < summary["agreement"]["rate"] < 0.8  # half the period disagreed, half agreed
    matrix = summary["confusion"]["matrix"]
    assert sum(map(sum, matrix)) == summary["agreement"]["rows"]

    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["mlops.serve_report.champion_version"] == versions["v1"]
    assert run.data.metrics["agreement_rate"] == pytest.approx(summary["agreement"]["rate"])


def _thread_cpus(pid: int) -> set[frozenset[int]]:
    """The CPU sets of every thread of a process (affinity is per thread on Linux)."""
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


def test_shadow_worker_is_an_idle_priority_process_on_its_cpus_whose_crash_only_sheds_copies(
    versions, tmp_path
):
    uri, name = versions["uri"], versions["name"]
    _set_alias(uri, name, "challenger", versions["v3"])
    log_path = tmp_path / "predictions.jsonl"
    # The worker on the last CPU only (--shadow-cpus): on a machine with CPUs to spare, off the champion's.
    worker_cpu = max(os.sched_getaffinity(0))
    server = _serve(versions, tmp_path, log_path, "challenger", "shadow", "--shadow-cpus", str(worker_cpu))
    x, _ = digits_frame()
    sent: list[str] = []

    def send(count: int) -> None:
        for i in range(count):
            rows = x.iloc[i * 2 : i * 2 + 2]
            response = server.post({"dataframe_split": rows.to_dict(orient="split")})
            assert response.status_code == 200 and response.headers["X-Model-Role"] == "champion"
            sent.append(response.headers["X-Request-Id"])

    def shadow() -> dict:
        return server.get("/health").json()["shadow"]

    def settled() -> dict | bool:
        report = shadow()
        return report["scored"] + report["shed"] == len(sent) and report["waiting"] == 0 and report

    try:
        # The challenger scores in a process of its own, a child of the server, at the lowest priority.
        worker = shadow()["worker"]
        assert worker["ready"] and worker["priority"] == "SCHED_IDLE, nice 19" and worker["restarts"] == 0
        first = psutil.Process(worker["pid"])
        assert first.ppid() == server.process.pid and first.nice() == 19
        assert os.sched_getscheduler(first.pid) == os.SCHED_IDLE
        assert worker["cpus"] == [worker_cpu] and _thread_cpus(first.pid) == {frozenset({worker_cpu})}
        assert len(os.sched_getaffinity(server.process.pid)) == len(os.sched_getaffinity(0))  # not the server
        send(10)
        assert _wait(settled, server, "shadow copies not settled")["scored"] > 0

        # The worker dies: serving goes on, copies are shed and counted while no worker is up.
        os.kill(first.pid, signal.SIGKILL)
        _wait(lambda: not shadow()["worker"]["ready"], server, "the worker's death went unnoticed")
        shed_before = shadow()["shed"]
        send(5)
        assert shadow()["shed"] >= shed_before + 5
        # A new worker takes over and scores again.
        worker = _wait(lambda: (w := shadow()["worker"])["ready"] and w, server, "no new shadow worker")
        assert worker["restarts"] == 1 and worker["pid"] != first.pid
        assert worker["last_exit"] == "killed by SIGKILL"
        assert _thread_cpus(worker["pid"]) == {frozenset({worker_cpu})}  # the new worker too
        assert "shadow worker gone (killed by SIGKILL)" in server.log_text()
        scored_before = shadow()["scored"]
        send(10)
        assert _wait(settled, server, "shadow copies not settled after the restart")["scored"] > scored_before
        second = psutil.Process(worker["pid"])
    finally:
        server.stop()
    # Every request kept its prediction-log line (shed copies marked shed), and the server's shutdown
    # took its worker with it.
    lines = {line["request_id"]: line for line in _log_lines(log_path)}
    assert set(sent) <= set(lines) and len(sent) == 25
    assert sum(bool(lines[r]["shadow"].get("shed")) for r in sent) >= 5
    assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE


def test_canary_routes_sticky_users_names_the_version_and_the_guard_stops_a_failing_challenger(
    versions, tmp_path, monkeypatch
):
    uri, name = versions["uri"], versions["name"]
    _set_alias(uri, name, "canary", versions["v2"])
    log_path = tmp_path / "predictions.jsonl"
    server = _serve(
        versions, tmp_path, log_path, "canary", "canary",
        "--canary-percent", "50", "--sticky-header", "X-User", "--reload-interval", "0.3",
    )  # fmt: skip
    try:
        x, _ = digits_frame()
        body = {"dataframe_split": x.iloc[:4].to_dict(orient="split")}
        session = requests.Session()
        seen: dict[str, set] = {}
        for _ in range(2):
            for user in range(30):
                response = session.post(
                    f"{server.url}/invocations", json=body, headers={"X-User": f"user-{user}"}, timeout=30
                )
                assert response.status_code == 200
                seen.setdefault(f"user-{user}", set()).add(
                    (response.headers["X-Model-Version"], response.headers["X-Model-Role"])
                )
        assert all(len(versions_seen) == 1 for versions_seen in seen.values())  # one user, one model
        answered_by = {next(iter(v)) for v in seen.values()}
        assert answered_by == {(versions["v1"], "champion"), (versions["v2"], "challenger")}
        health = server.get("/health").json()
        assert health["versions"]["challenger"]["requests"] + health["versions"]["champion"]["requests"] == 60
        assert health["guard"]["tripped"] is False

        # A challenger that fails on every request: the champion answers, and the guard trips.
        _set_alias(uri, name, "canary", versions["v4"])
        _wait(
            lambda: server.get("/health").json()["challenger"]["model_version"] == versions["v4"],
            server,
            "canary alias move not followed",
        )
        for user in range(30):
            response = session.post(
                f"{server.url}/invocations", json=body, headers={"X-User": f"user-{user}"}
            )
            assert response.status_code == 200 and response.headers["X-Model-Role"] == "champion"
        health = server.get("/health").json()
        assert health["guard"]["tripped"] is True and "canary routing stopped" in health["guard"]["reason"]
        assert health["versions"]["challenger"]["errors"] == 3  # more than 1% of 200: the third trips it
        assert "canary guard tripped" in server.log_text()
        _wait(lambda: len(_log_lines(log_path)) >= 90, server, "prediction log not flushed")
    finally:
        server.stop()
    lines = _log_lines(log_path)
    roles = {line["role"] for line in lines}
    assert roles == {"champion", "challenger"} and all(line["mode"] == "canary" for line in lines)
    assert sum("canary_error" in line for line in lines) == 3
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(cli, ["serve", "report", "--log", str(log_path), "--no-mlflow"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["mode"] == "canary" and summary["versions"]["challenger"]["errors"] == 3


def _health_after_concurrent_requests(server: ServerProcess, bodies: list[dict]) -> dict:
    """/health once every shadow copy of `bodies`, sent 8 at a time, is scored or shed."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:  # concurrent requests: their copies travel as bursts
        statuses = list(pool.map(lambda body: server.post(body).status_code, bodies))
    assert statuses == [200] * len(bodies)

    def settled() -> dict | bool:
        health = server.get("/health").json()
        report = health["shadow"]
        return report["scored"] + report["shed"] == len(bodies) and report["waiting"] == 0 and health

    return _wait(settled, server, "shadow copies not settled")


def test_shadow_without_a_log_counts_agreement_per_copy_for_bursts_scored_in_one_call(versions, tmp_path):
    """No prediction log: the worker scores each burst in one model call and counts agreement for the
    whole burst at once; the counts must be those of each copy compared alone."""
    uri, name = versions["uri"], versions["name"]
    x, _ = digits_frame()
    bodies = [{"dataframe_split": x.iloc[i * 3 : i * 3 + 3].to_dict(orient="split")} for i in range(40)]
    for challenger, agrees in ((versions["v1"], True), (versions["v2"], False)):
        _set_alias(uri, name, "challenger", challenger)
        server = ServerProcess(
            f"models:/{name}@champion",
            uri,
            tmp_path / f"serve-{challenger}.log",
            "--challenger",
            f"models:/{name}@challenger",
            "--mode",
            "shadow",
            "--shadow-max-busy",
            "1",  # score every copy this test can: the counts are what it checks
        ).wait_ready()
        try:
            health = _health_after_concurrent_requests(server, bodies * 3)
        finally:
            server.stop()
        scored = health["shadow"]["scored"]
        assert scored > 0 and health["versions"]["challenger"]["errors"] == 0
        # v1 beside itself agrees on every row; v2 (label + 1) on none.
        assert health["agreement"]["rows"] == 3 * scored
        assert health["agreement"]["agreed"] == (3 * scored if agrees else 0)


def test_agreement_of_a_stacked_burst_equals_each_copy_compared_alone():
    import numpy as np

    from mlops_platform.serving.challenger import agreement_counts
    from mlops_platform.serving.shadow_worker import _agreed_per_copy

    rng = np.random.default_rng(0)
    sizes = [1, 3, 2, 5]
    ours = [rng.random((n, 4)) for n in sizes]
    theirs = np.concatenate([o + rng.normal(0, 0.3, o.shape) for o in ours])
    bounds = np.cumsum([0, *sizes])
    expected = [agreement_counts(o, theirs[bounds[i] : bounds[i + 1]])[1] for i, o in enumerate(ours)]
    assert _agreed_per_copy(ours, theirs, bounds).tolist() == expected
    assert 0 < sum(expected) < sum(sizes)  # the case compares both agreeing and disagreeing rows
    # Labels (1-D outputs) are compared as they are.
    labels = [np.array(["a"]), np.array(["b", "c"])]
    assert _agreed_per_copy(labels, np.array(["a", "x", "c"]), np.array([0, 1, 3])).tolist() == [1, 1]
    # What cannot be stacked the same way is left to the per-copy comparison.
    assert _agreed_per_copy([None, ours[1]], theirs[:4], bounds[:3]) is None
    assert _agreed_per_copy([rng.random((1, 4)), rng.random((2, 3))], theirs[:3], np.array([0, 1, 3])) is None


def test_a_burst_of_counted_copies_travels_as_one_array_and_comes_back_as_one_count():
    """Copies nobody logs go to the worker stacked (one message for the burst) and come back folded
    into one result per burst; what the server adds up equals each copy taken alone."""
    import pickle

    import numpy as np

    from mlops_platform.serving.shadow import CountedBurst
    from mlops_platform.serving.shadow_worker import HEADER, counted, encode, expand_bursts

    rng = np.random.default_rng(0)
    identity = object()
    inputs = [rng.random((n, 4)).astype(np.float32) for n in (1, 3, 2)]
    ours = [rng.random((n, 10)).astype(np.float32) for n in (1, 3, 2)]
    burst = CountedBurst(identity)
    for rows, output in zip(inputs, ours, strict=True):
        burst.add(rows, output)
    assert burst.parts() == [burst]  # the copies stack: the burst goes as it is
    # Copies that do not stack (a champion reloaded mid-burst with another output) go as bursts of
    # their own, each copy in exactly one.
    mixed = CountedBurst(identity)
    for rows, output in [(inputs[0], ours[0]), (inputs[1], ours[1][:, :5]), (inputs[2], ours[2])]:
        mixed.add(rows, output)
    parts = mixed.parts()
    assert [len(part.inputs) for part in parts] == [2, 1]
    assert all(part.identity is identity and part.queued_at == mixed.queued_at for part in parts)
    np.testing.assert_array_equal(parts[1].ours[0], ours[1][:, :5])
    assert sum(len(part.message(i)["sizes"]) for i, part in enumerate(parts)) == 3
    frame = encode([burst.message(7)])  # as it goes down the pipe: a length, then a pickle
    (length,) = HEADER.unpack_from(frame)
    message = pickle.loads(frame[HEADER.size : HEADER.size + length])[0]
    jobs = expand_bursts([message, {"id": 3, "other": True}])
    assert [job["id"] for job in jobs] == [(7, 0), (7, 1), (7, 2), 3]
    for job, rows, output in zip(jobs, inputs, ours, strict=False):
        np.testing.assert_array_equal(job["array"], rows)
        np.testing.assert_array_equal(job["ours_output"], output)
    results = [
        {"id": (7, 0), "version": "2", "latency_s": 0.01, "error": None, "rows": 1, "agreed": 1},
        {"id": (7, 1), "version": "2", "latency_s": 0.01, "error": None, "rows": 3, "agreed": 2},
        {"id": (7, 2), "shed": "waited too long"},
        {"id": 3, "version": "2", "latency_s": 0.02, "error": "boom", "rows": 0, "agreed": 0},
    ]
    assert counted(results) == [
        results[3],
        {
            "burst": 7,
            "version": "2",
            "latencies_s": [0.01, 0.01],
            "errors": [],
            "rows": 4,
            "agreed": 3,
            "shed": 1,
        },
    ]


def test_counted_copies_hold_their_place_in_the_queue_and_are_shed_with_a_worker_that_dies():
    import asyncio

    import numpy as np

    from mlops_platform.serving.shadow import ShadowWorker

    class Pipe:  # the worker's stdin, as far as the server's side uses it
        def __init__(self):
            self.frames: list[bytes] = []
            self.transport = type("Transport", (), {"get_write_buffer_size": lambda self: 0})()

        def write(self, frame: bytes) -> None:
            self.frames.append(frame)

    async def scenario() -> tuple[ShadowWorker, Pipe]:
        worker = ShadowWorker(capacity=8, settings=dict, max_busy=1.0)
        worker._loop = asyncio.get_running_loop()
        worker._process = type("Process", (), {"stdin": Pipe(), "returncode": None, "pid": 1})()
        worker._ready = True  # a worker up, the champion idle: only the queue's room decides
        identity = object()
        offered = 0
        while not worker.full():
            worker.offer_counted(identity, np.zeros((1, 4)), np.zeros((1, 2)))
            offered += 1
        # Capacity counts copies, not messages; every quarter of it went as one frame.
        assert offered == 8 and worker.report()["waiting"] == 8 and len(worker._process.stdin.frames) == 4
        worker._ready = False
        worker._drop_pending()  # the worker died: every copy it had not answered is shed
        return worker

    worker = asyncio.run(scenario())
    assert worker.shed == 8 and worker.report()["waiting"] == 0 and worker._pending_bytes == 0
    assert not worker._bursts and worker._burst is None
