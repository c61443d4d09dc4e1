# ruff: noqa: E501  (the route table below reads best as one route a line)
"""MLflow's permission model on the team stack, over the routes our commands use.

Users are made through MLflow's auth REST API and given DENY (no permission), READ, EDIT or MANAGE on one
experiment and one registered model; every route is called over plain HTTP as each of them, as an
anonymous client and as the admin. Expected, as https://mlflow.org/docs/latest/auth.html documents:
anonymous -> 401; a level below what the route needs -> 403; at or above it -> 200.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from team_stack import ADMIN_PASSWORD, TeamStack, admin_credentials

from mlops_platform.accounts import grant

# DENY is MLflow's "no permission" grant: it overrides the server's default_permission (READ).
LEVELS = ("DENY", "READ", "EDIT", "MANAGE")
ROLES = ("anonymous", *LEVELS, "admin")


@dataclass
class Resources:
    tracking_uri: str
    tag: str
    experiment_id: str
    run_id: str
    artifact_path: str  # <experiment>/<run>/artifacts, as the proxy names it
    model_name: str
    version: str

    def fresh_run(self) -> str:
        """A run only one request uses (for requests that end or delete it)."""
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri).create_run(self.experiment_id).info.run_id

    def fresh_artifact(self, who: str) -> str:
        """An artifact only one request uses (uploaded as the admin, for requests that delete it)."""
        path = f"{self.artifact_path}/doomed-{who}.txt"
        url = f"{self.tracking_uri}/api/2.0/mlflow-artifacts/artifacts/{path}"
        requests.put(url, data=b"x", auth=("admin", ADMIN_PASSWORD), timeout=30).raise_for_status()
        return path

    def fresh_version(self) -> str:
        """A model version only one request uses (for requests that delete it)."""
        from mlflow import MlflowClient

        source = f"mlflow-artifacts:/{self.artifact_path}/model"
        return (
            MlflowClient(self.tracking_uri).create_model_version(self.model_name, source, self.run_id).version
        )


@dataclass(frozen=True)
class Route:
    """One request: `request(resources, caller)` -> (method, path under the server, keyword arguments)."""

    name: str
    needs: str  # the weakest level that may call it
    request: Callable[[Resources, str], tuple[str, str, dict]]


def _run_metric(r: Resources) -> dict:
    return {"run_id": r.run_id, "metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0}]}


def _new_version(r: Resources) -> dict:
    return {"name": r.model_name, "source": f"mlflow-artifacts:/{r.artifact_path}/model", "run_id": r.run_id}


API, ARTIFACTS = "/api/2.0/mlflow", "/api/2.0/mlflow-artifacts/artifacts"
ROUTES = [
    # tracking: what training, sync and reap call
    Route("get experiment", "READ", lambda r, who: ("GET", f"{API}/experiments/get", {"params": {"experiment_id": r.experiment_id}})),
    Route("get run", "READ", lambda r, who: ("GET", f"{API}/runs/get", {"params": {"run_id": r.run_id}})),
    Route("create run", "EDIT", lambda r, who: ("POST", f"{API}/runs/create", {"json": {"experiment_id": r.experiment_id}})),
    Route("log batch", "EDIT", lambda r, who: ("POST", f"{API}/runs/log-batch", {"json": _run_metric(r)})),
    Route("end run", "EDIT", lambda r, who: ("POST", f"{API}/runs/update", {"json": {"run_id": r.fresh_run(), "status": "KILLED"}})),
    Route("delete run", "MANAGE", lambda r, who: ("POST", f"{API}/runs/delete", {"json": {"run_id": r.fresh_run()}})),
    # registry: what serving, promote and rollback call
    Route("get model", "READ", lambda r, who: ("GET", f"{API}/registered-models/get", {"params": {"name": r.model_name}})),
    Route("get champion", "READ", lambda r, who: ("GET", f"{API}/registered-models/alias", {"params": {"name": r.model_name, "alias": "champion"}})),
    Route("create version", "EDIT", lambda r, who: ("POST", f"{API}/model-versions/create", {"json": _new_version(r)})),
    Route("set alias", "EDIT", lambda r, who: ("POST", f"{API}/registered-models/alias", {"json": {"name": r.model_name, "alias": f"a-{who.lower()}", "version": r.version}})),
    Route("delete version", "MANAGE", lambda r, who: ("DELETE", f"{API}/model-versions/delete", {"json": {"name": r.model_name, "version": r.fresh_version()}})),
    # artifacts, through the server's proxy to S3
    Route("list artifacts", "READ", lambda r, who: ("GET", ARTIFACTS, {"params": {"path": r.artifact_path}})),
    Route("download artifact", "READ", lambda r, who: ("GET", f"{ARTIFACTS}/{r.artifact_path}/note.txt", {})),
    Route("upload artifact", "EDIT", lambda r, who: ("PUT", f"{ARTIFACTS}/{r.artifact_path}/up-{who}.txt", {"data": b"hi"})),
    Route("delete artifact", "MANAGE", lambda r, who: ("DELETE", f"{ARTIFACTS}/{r.fresh_artifact(who)}", {})),
]  # fmt: skip


def expected_status(role: str, needs: str) -> int:
    if role == "anonymous":
        return 401
    if role == "admin":
        return 200
    return 200 if LEVELS.index(role) >= LEVELS.index(needs) else 403


@pytest.fixture(scope="module")
def resources(team_stack: TeamStack, tmp_path_factory: pytest.TempPathFactory) -> Resources:
    """One experiment, run (with an artifact in S3) and registered model, made by the admin; one user
    per permission level on both."""
    from mlflow import MlflowClient

    tag = uuid.uuid4().hex[:6]
    with admin_credentials():
        client = MlflowClient(team_stack.url)
        experiment_id = client.create_experiment(f"permissions-{tag}")
        run = client.create_run(experiment_id)
        note = tmp_path_factory.mktemp("artifact") / "note.txt"
        note.write_text("shared")
        client.log_artifact(run.info.run_id, str(note))
        model_name = f"permissions-model-{tag}"
        client.create_registered_model(model_name)
        version = client.create_model_version(
            model_name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        ).version
        client.set_registered_model_alias(model_name, "champion", version)
        for level in LEVELS:
            team_stack.add_user(f"{level.lower()}-{tag}", f"pw-{level}-{tag}")
            grant(team_stack.url, f"{level.lower()}-{tag}", "experiment", experiment_id, level)
            grant(team_stack.url, f"{level.lower()}-{tag}", "registered_model", model_name, level)
    artifact_path = run.info.artifact_uri.split(":/", 1)[1]
    return Resources(team_stack.url, tag, experiment_id, run.info.run_id, artifact_path, model_name, version)


def _session(team_stack: TeamStack, role: str, tag: str) -> requests.Session:
    session = requests.Session()
    if role == "admin":
        session.auth = ("admin", ADMIN_PASSWORD)
    elif role != "anonymous":
        user = f"{role.lower()}-{tag}"
        session.auth = (user, team_stack.users[user])
    return session


def test_permission_matrix(team_stack: TeamStack, resources: Resources):
    mismatches = []
    with admin_credentials():  # fresh_run() and the admin uploads are made as the admin
        for role in ROLES:
            session = _session(team_stack, role, resources.tag)
            for route in ROUTES:
                method, path, arguments = route.request(resources, role)
                response = session.request(method, f"{team_stack.url}{path}", timeout=60, **arguments)
                status = response.status_code
                if status != expected_status(role, route.needs):
                    mismatches.append(
                        f"{role:>14} {route.name:<18} -> {status} (expected "
                        f"{expected_status(role, route.needs)}): {response.text[:120]}"
                    )
    assert not mismatches, "\n".join(mismatches)


def test_a_wrong_password_is_401_and_the_artifacts_stay_in_the_bucket(
    team_stack: TeamStack, resources: Resources, tmp_path: Path
):
    from team_stack import keys_under

    wrong = requests.get(
        f"{team_stack.url}{API}/runs/get",
        params={"run_id": resources.run_id},
        auth=("admin", "not-the-password"),
        timeout=30,
    )
    assert wrong.status_code == 401
    keys = keys_under(team_stack.s3.client(), team_stack.bucket, team_stack.prefix)
    assert any(key.endswith(f"{resources.run_id}/artifacts/note.txt") for key in keys)
    assert not list(team_stack.home.rglob("note.txt"))
