"""Malformed requests get 400/413/415/422 with a message naming the problem; the server keeps serving.

Every case goes over real HTTP to a real `mlops serve` process; afterwards the same server must still
predict exactly as MLflow does, and its log must not hold any payload.
"""

from __future__ import annotations

import json

from serving_helpers import ServerProcess, digits_frame

MARKER = "PAYLOAD-MARKER-7f3a"


def _split(rows, columns=None):
    x, _ = digits_frame()
    return {"dataframe_split": {"columns": columns or list(x.columns), "data": rows}}


def _cases() -> list[tuple[str, object, str, int, str]]:
    """(kind, body, content type, status, words the message must contain)."""
    x, _ = digits_frame()
    columns = list(x.columns)
    row = x.iloc[0].tolist()
    json_type = "application/json"
    return [
        ("malformed JSON", '{"dataframe_split": {"columns": [', json_type, 400, "malformed JSON"),
        ("JSON not an object", "[[1, 2, 3]]", json_type, 400, "must be an object"),
        ("unknown format key", json.dumps({"data": [row]}), json_type, 400, "unknown key(s) 'data'"),
        ("stray key beside a format", json.dumps({**_split([row]), "foo": 1}), json_type, 400, "'foo'"),
        ("two format keys", json.dumps({**_split([row]), "inputs": [row]}), json_type, 400, "exactly one"),
        ("no format key", json.dumps({"params": {}}), json_type, 400, "found none"),
        ("empty body", "", json_type, 400, "empty request body"),
        ("invalid UTF-8", b'{"inputs": "\xff\xfe"}', json_type, 400, "malformed JSON"),
        ("NaN literal", '{"inputs": [NaN]}', json_type, 422, "missing values are not accepted"),
        ("number overflowing double", '{"inputs": [1e999]}', json_type, 400, "infinity"),
        ("wrong content type", json.dumps(_split([row])), "text/plain", 415, "text/plain"),
        ("missing content type", json.dumps(_split([row])), "", 415, "Content-Type"),
        (
            "unsupported charset",
            json.dumps(_split([row])),
            "application/json; charset=latin-1",
            415,
            "charset",
        ),
        ("body over size limit", json.dumps(_split([row] * 400)), json_type, 413, "exceeds the limit"),
        ("dataframe_split not an object", json.dumps({"dataframe_split": [row]}), json_type, 400, "columns"),
        (
            "dataframe_split without data",
            json.dumps({"dataframe_split": {"columns": columns}}),
            json_type,
            400,
            "no 'data'",
        ),
        (
            "dataframe_split without columns",
            json.dumps({"dataframe_split": {"data": [row]}}),
            json_type,
            422,
            "no 'columns'",
        ),
        (
            "missing column",
            json.dumps(_split([row[1:]], columns[1:])),
            json_type,
            422,
            "missing column(s) 'pixel_0_0'",
        ),
        (
            "extra column",
            json.dumps(_split([[*row, 1.0]], [*columns, "zz"])),
            json_type,
            422,
            "unexpected column(s) 'zz'",
        ),
        (
            "duplicated column",
            json.dumps(_split([[*row, 1.0]], [*columns, "pixel_0_0"])),
            json_type,
            422,
            "duplicated column(s) 'pixel_0_0'",
        ),
        ("string value", json.dumps(_split([["abc", *row[1:]]])), json_type, 422, "wrong type at row 0"),
        ("boolean value", json.dumps(_split([row, [True, *row[1:]]])), json_type, 422, "boolean"),
        ("null value", json.dumps(_split([[*row[:5], None, *row[6:]]])), json_type, 422, "null"),
        (
            "ragged rows",
            json.dumps(_split([row, row[:-1]])),
            json_type,
            422,
            "row 1 has 63 values, expected 64",
        ),
        ("rows nested too deep", json.dumps(_split([[[v] for v in row]])), json_type, 422, "wrong shape"),
        ("empty rows", json.dumps(_split([])), json_type, 422, "empty input"),
        ("empty records", json.dumps({"dataframe_records": []}), json_type, 422, "empty input"),
        (
            "record with an extra key",
            json.dumps({"dataframe_records": [{**x.iloc[0].to_dict(), "zz": 1}]}),
            json_type,
            422,
            "record 0: unexpected column(s) 'zz'",
        ),
        (
            "records that are lists",
            json.dumps({"dataframe_records": [row]}),
            json_type,
            422,
            "list of objects",
        ),
        (
            "inputs as a bare matrix for a column model",
            json.dumps({"inputs": [row]}),
            json_type,
            422,
            "{column: value}",
        ),
        (
            "columns of unequal length",
            json.dumps({"inputs": {c: [1.0] for c in columns} | {"pixel_0_0": []}}),
            json_type,
            422,
            "different lengths",
        ),
        ("number sent as a string", json.dumps(_split([["12", *row[1:]]])), json_type, 422, "got str '12'"),
        ("params not an object", json.dumps({**_split([row]), "params": [1]}), json_type, 400, "'params'"),
        ("CSV with missing columns", "pixel_0_0,pixel_0_1\nabc,1\n", "text/csv", 422, "missing column(s)"),
        (
            "CSV value not a number",
            ",".join(columns) + "\n" + ",".join(["x"] + ["0"] * 63) + "\n",
            "text/csv",
            422,
            "'x' is not a number",
        ),
        (
            "CSV with an empty cell",
            ",".join(columns) + "\n" + ",".join([""] + ["0"] * 63) + "\n",
            "text/csv",
            422,
            "empty value",
        ),
        ("CSV row too short", ",".join(columns) + "\n1,2\n", "text/csv", 422, "CSV row 1 has 2 values"),
        (
            "CSV with NaN",
            ",".join(columns) + "\n" + ",".join(["nan"] + ["0"] * 63) + "\n",
            "text/csv",
            422,
            "non-finite value at row 0, column 'pixel_0_0'",
        ),
        ("CSV only a header", ",".join(columns) + "\n", "text/csv", 422, "empty input"),
    ]


def test_bad_requests_are_refused_and_named_then_the_server_still_predicts(sklearn_server: ServerProcess):
    cases = _cases()
    assert len(cases) >= 20
    failures = []
    for kind, body, content_type, status, words in cases:
        headers = {"Content-Type": content_type} if content_type else {}
        response = sklearn_server.session.post(
            f"{sklearn_server.url}/invocations", data=body, headers=headers
        )
        message = (
            response.json().get("message", "")
            if response.headers.get("content-type") == "application/json"
            else response.text
        )
        if response.status_code != status or words not in message:
            failures.append(f"{kind}: {response.status_code} {message[:200]!r}")
        elif response.status_code != 413:
            assert response.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"), kind
    assert not failures, "\n".join(failures)

    # Refusals quote at most the one offending value, never the rest of the payload.
    x, _ = digits_frame()
    row = x.iloc[0].tolist()
    payload = json.dumps(_split([["abc", *row[1:]], *[row] * 50, [*row[:-1], 98765.4321]]))
    assert sklearn_server.post(payload).status_code == 422
    assert sklearn_server.post(payload[:-3] + MARKER).status_code == 400

    # Still alive, still right.
    good = _split(x.iloc[:5].values.tolist())
    response = sklearn_server.post(good)
    assert response.status_code == 200
    assert (
        response.json() == {"predictions": digits_frame()[1].iloc[:5].tolist()}
        or len(response.json()["predictions"]) == 5
    )
    health = sklearn_server.get("/health").json()
    assert health["refused"] >= len(cases) and health["served"] >= 1
    log = sklearn_server.log_text()
    assert "refused request: 422" in log and "refused request: 413" in log
    assert MARKER not in log and "98765.4321" not in log
    refusals = [line for line in log.splitlines() if "refused request" in line]
    assert len(refusals) >= len(cases) and max(map(len, refusals)) < 400


def test_torch_shape_and_type_errors(torch_server: ServerProcess):
    x, _ = digits_frame()
    row = x.iloc[0].tolist()
    cases = [
        ({"inputs": [row[:10]]}, 422, "wrong shape"),
        ({"inputs": row}, 422, "wrong shape: got (64,)"),
        ({"inputs": {"x": [row]}}, 422, "nested list"),
        ({"instances": [[*row[:-1], "7"]]}, 422, "wrong type"),
        ({"inputs": [row, row[:3]]}, 422, "ragged"),
        ({"inputs": []}, 422, "empty input"),
    ]
    for body, status, words in cases:
        response = torch_server.post(body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["message"], response.text
    response = torch_server.post({"inputs": [row]})
    assert response.status_code == 200 and len(response.json()["predictions"][0]) == 10
