"""`mlops predict` from the shell (in-process through click), and `mlops serve`'s own refusals."""

from __future__ import annotations

import json

from click.testing import CliRunner
from serving_helpers import digits_frame

from mlops_platform.cli import cli


def test_predict_json_and_csv_match_pyfunc(sklearn_model, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", sklearn_model.tracking_uri)
    x, _ = digits_frame()
    rows = x.iloc[30:36]
    (tmp_path / "in.json").write_text(json.dumps({"dataframe_records": rows.to_dict(orient="records")}))
    rows.to_csv(tmp_path / "in.csv", index=False)
    client = MlflowClient(sklearn_model.tracking_uri)
    source = client.get_model_version_download_uri(sklearn_model.name, sklearn_model.versions[0])
    expected = mlflow.pyfunc.load_model(
        mlflow.artifacts.download_artifacts(source, tracking_uri=sklearn_model.tracking_uri)
    ).predict(rows)
    runner = CliRunner()
    for name in ("in.json", "in.csv"):
        result = runner.invoke(
            cli, ["predict", "--model-uri", sklearn_model.champion_uri, "--input", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {"predictions": expected.tolist()}

    (tmp_path / "bad.json").write_text(json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]]}}))
    result = runner.invoke(
        cli, ["predict", "--model-uri", sklearn_model.champion_uri, "--input", str(tmp_path / "bad.json")]
    )
    assert result.exit_code == 1 and "unexpected column(s) 'a'" in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_an_unknown_model_without_a_traceback(sqlite_tracking_uri):
    result = CliRunner().invoke(cli, ["serve", "--model-uri", "models:/no-such-model@champion"])
    assert result.exit_code == 1
    assert "no-such-model" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["serve", "--model-uri", "models:/x@champion", "--workers", "0"])
    assert result.exit_code == 1 and "workers" in result.output


def test_score_file_reads_each_format_by_its_suffix(sklearn_model, tmp_path):
    """The library function `mlops predict` calls: Parquet by suffix, the fast path's answer, and a
    refused request as a UserError naming the file."""
    import pytest

    from mlops_platform.errors import UserError
    from mlops_platform.serving.scoring import score_file

    x, _ = digits_frame()
    rows = x.iloc[40:43]
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    rows.to_csv(tmp_path / "in.csv", index=False)
    uri, tracking = sklearn_model.champion_uri, sklearn_model.tracking_uri
    from_parquet = json.loads(score_file(uri, tmp_path / "in.parquet", tracking))
    assert from_parquet == json.loads(score_file(uri, tmp_path / "in.csv", tracking))
    assert len(from_parquet["predictions"]) == 3
    (tmp_path / "empty.json").write_text(json.dumps({"dataframe_records": []}))
    with pytest.raises(UserError, match=r"empty\.json: .*empty input"):
        score_file(uri, tmp_path / "empty.json", tracking)
