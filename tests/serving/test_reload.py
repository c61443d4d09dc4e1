"""Alias following: promote a new version while requests flow; none fails, and the new one takes over.

Also checks `--log-predictions` on the same server: one JSON line per served request, with the model
version that answered it, the validated input and the predictions sent.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import requests
from serving_helpers import ServerProcess, digits_frame, log_sklearn, set_champion

SWAP_TIMEOUT_S = 60


def test_moving_champion_swaps_the_model_without_a_failed_request(sqlite_tracking_uri, tmp_path):
    name = f"serve-reload-{uuid.uuid4().hex[:6]}"
    v1 = log_sklearn(sqlite_tracking_uri, name)
    v2 = log_sklearn(sqlite_tracking_uri, name, label_shift=1)
    set_champion(sqlite_tracking_uri, name, v1)
    log_path = tmp_path / "predictions.jsonl"
    server = ServerProcess(
        f"models:/{name}@champion",
        sqlite_tracking_uri,
        tmp_path / "serve.log",
        "--reload-interval",
        "0.3",
        "--log-predictions",
        str(log_path),
    ).wait_ready()
    try:
        x, y = digits_frame()
        rows = x.iloc[:20]
        body = json.dumps({"dataframe_split": rows.to_dict(orient="split")})
        answers: list[list[tuple[int, object]]] = [[], [], []]
        stop = threading.Event()

        def client(mine: list) -> None:
            session = requests.Session()
            while not stop.is_set():
                response = session.post(
                    f"{server.url}/invocations",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                mine.append((response.status_code, response.json().get("predictions")))

        threads = [threading.Thread(target=client, args=(mine,)) for mine in answers]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert server.get("/health").json()["model_version"] == v1
        set_champion(sqlite_tracking_uri, name, v2)
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        while server.get("/health").json()["model_version"] != v2:
            assert time.monotonic() < deadline, f"alias move not followed:\n{server.log_text()}"
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        version = server.get("/health").json()
        for thread in threads:
            thread.join()
    finally:
        server.stop()

    from mlflow import MlflowClient

    mv2 = MlflowClient(sqlite_tracking_uri).get_model_version(name, v2)
    assert version["model_name"] == name and version["run_id"] == mv2.run_id and version["reloads"] == 1
    assert f"now serving {name} version {v2}" in server.log_text()

    every = [answer for mine in answers for answer in mine]
    assert all(status == 200 for status, _ in every), {status for status, _ in every}
    predictions = [p for _, p in every]
    v1_answer, v2_answer = answers[0][0][1], answers[0][-1][1]
    # v1 learned the digits; v2 learned label + 1: every answer is one or the other, never a failure.
    assert sum(a == b for a, b in zip(v1_answer, y.iloc[:20], strict=True)) >= 15
    assert sum((a + 1) % 10 == b for a, b in zip(v1_answer, v2_answer, strict=True)) >= 15
    assert set(map(tuple, predictions)) == {tuple(v1_answer), tuple(v2_answer)}
    for mine in answers:  # each client's requests are sequential: once v2 answered, v1 never again
        mine_predictions = [p for _, p in mine]
        first_v2 = mine_predictions.index(v2_answer)
        assert all(p == v2_answer for p in mine_predictions[first_v2:]), "an old answer after the swap"

    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(lines) == len(every)
    assert {line["model_version"] for line in lines} == {v1, v2}
    assert all(line["model_name"] == name for line in lines)
    assert lines[0]["columns"] == list(x.columns)
    assert lines[0]["inputs"] == rows.values.tolist()
    assert [line["predictions"] for line in lines if line["model_version"] == v2][-1] == v2_answer
