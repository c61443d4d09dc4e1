"""Data-parallel training under torchrun, with 2 CPU processes (gloo) on a real tracking server.

What must hold: one MLflow run per job, test metrics equal to one process within 1e-4 (MLP, no dropout,
same seed and global batch), every metric step once, restarts continuing the same run, failures leaving
nothing RUNNING. The unit tests first: sharding, launch arguments, config rules.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from unittest import mock

import psutil
import pytest
import torch
from click.testing import CliRunner

from mlops_platform.cli.jobs import job_command
from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.entrypoints import entry_point
from mlops_platform.errors import UserError
from mlops_platform.tracking import RecordingTracker
from mlops_platform.tracking.system_metrics import measure_once
from mlops_platform.training import launcher, torch_job
from mlops_platform.training.checkpoint import load_checkpoint
from mlops_platform.training.distributed import World, check_batch_size, local_count, shard_indices
from mlops_platform.training.node_metrics import epoch_means, node_metric_name
from mlops_platform.training.torch_loop import EPOCH_METRICS, STEP_METRICS

REPO = Path(__file__).resolve().parents[2]
FINAL = ("test_loss", "test_accuracy", "test_f1_macro", "best_epoch")
# The MLP on digits without dropout; batch 30 leaves a short last batch (1257 training rows) that
# splits unevenly over 2 ranks, the case where per-rank mean losses would go wrong.
DIGITS_MLP = {
    "dataset": "digits",
    "model": "mlp",
    "hidden_sizes": "32",
    "dropout": 0.0,
    "batch_size": 30,
    "patience": 0,
    "log_every_n_steps": 7,
}
TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


# ------------------------------------------------------------------------------------------ units


@pytest.mark.parametrize(("n_samples", "size", "batch_size"), [(10, 2, 4), (11, 2, 4), (13, 3, 6), (3, 2, 2)])
def test_shards_rebuild_the_one_process_batches_exactly(n_samples, size, batch_size):
    """Rank r's k-th batch of batch_size/W rows, over all ranks, is the one-process k-th batch; the
    sampler's padding is gone, so every sample counts once (a rank may get an empty last batch)."""
    whole = shard_indices(n_samples, World(), shuffle=True, seed=7, epoch=3).tolist()
    assert sorted(whole) == list(range(n_samples))
    shards = [
        shard_indices(n_samples, World(rank=rank, size=size), shuffle=True, seed=7, epoch=3).tolist()
        for rank in range(size)
    ]
    assert sorted(index for shard in shards for index in shard) == list(range(n_samples))
    local = batch_size // size
    for k in range(-(-n_samples // batch_size)):
        rebuilt = {index for shard in shards for index in shard[k * local : (k + 1) * local]}
        assert rebuilt == set(whole[k * batch_size : (k + 1) * batch_size])
    assert [len(shard) for shard in shards] == [
        local_count(n_samples, World(rank=r, size=size)) for r in range(size)
    ]
    # Another epoch, another order; the same epoch, the same order (what resume relies on).
    assert shard_indices(n_samples, World(), shuffle=True, seed=7, epoch=4).tolist() != whole or n_samples < 4
    assert shard_indices(n_samples, World(), shuffle=True, seed=7, epoch=3).tolist() == whole


def test_world_from_torchrun_environment():
    env = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "GROUP_RANK": "1",
        "TORCHELASTIC_RESTART_COUNT": "2",
        "TORCHELASTIC_RUN_ID": "job",
    }
    world = World.from_env(env)
    assert (world.rank, world.size, world.local_rank, world.node_rank) == (3, 4, 1, 1)
    assert (world.restart_count, world.job_id, world.is_main, world.is_node_leader) == (
        2,
        "job",
        False,
        False,
    )
    assert World.from_env({}) == World() and not World().distributed


def test_global_batch_must_split_evenly_before_any_run(sqlite_tracking_uri, fresh_experiment):
    from mlflow import MlflowClient

    from mlops_platform.cli import cli

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    result = CliRunner().invoke(
        cli, ["train", "torch", "--experiment", name, "--nproc-per-node", "3", "--batch-size", "64"]
    )
    assert result.exit_code != 0 and "batch_size=64" in result.output and "multiple of 3" in result.output
    result = CliRunner().invoke(cli, ["train", "torch", "--experiment", name, "--nnodes", "2"])
    assert result.exit_code != 0 and "rdzv_endpoint" in result.output
    assert MlflowClient(sqlite_tracking_uri).search_runs([experiment_id]) == []
    # Under the user's own torchrun the world size comes from the environment: checked the same way.
    with pytest.raises(UserError, match=r"batch_size=64 .* multiple of 3"):
        check_batch_size(64, World(rank=0, size=3))


def test_launcher_hands_the_workers_the_same_config():
    config = TorchTrainConfig.parse(
        {**DIGITS_MLP, "nproc_per_node": 2, "max_restarts": 1, "grad_clip_norm": 1.5, "run_name": "a b"}
    )
    argv = launcher.torchrun_argv(config, "job-1")
    assert argv[: argv.index("--module")] == [
        "--nproc-per-node", "2", "--nnodes", "1", "--node-rank", "0", "--max-restarts", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "--rdzv-id", "job-1",
    ]  # fmt: skip
    assert argv[argv.index("--module") + 1 : argv.index("--module") + 4] == [
        "mlops_platform",
        "train",
        "torch",
    ]
    command = job_command(entry_point("train_torch"))
    context = command.make_context("torch", launcher.worker_options(config))
    assert TorchTrainConfig.parse(context.params) == config
    # Several nodes agree on the rendezvous id without talking: it comes from the endpoint.
    multi = {**DIGITS_MLP, "nnodes": 2, "rdzv_endpoint": "10.0.0.1:29400"}
    ids = {launcher.rendezvous_id(TorchTrainConfig.parse({**multi, "node_rank": rank})) for rank in (0, 1)}
    assert len(ids) == 1


def test_node_metric_names_and_epoch_means():
    assert (
        node_metric_name(2, "system/cpu_utilization_percentage") == "system/node_2/cpu_utilization_percentage"
    )
    assert epoch_means([{"a": 1.0, "b": 4.0}, {"a": 3.0}]) == {"a": 2.0, "b": 4.0}
    # What a node logs for an epoch shorter than the sampling interval: the sampler's names, measured now.
    now = measure_once()
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(now)
    assert 0 <= now["system/cpu_utilization_percentage"] <= 100


def test_resume_keeps_the_given_launch_params():
    stored = TorchTrainConfig.parse({**DIGITS_MLP, "epochs": 4}).to_params()
    given = TorchTrainConfig.parse(
        {"resume_from": "0123456789abcdef0123456789abcdef", "nproc_per_node": 2, "max_restarts": 1}
    )
    resumed = torch_job.config_from_checkpoint({"config": stored}, given)
    assert (resumed.nproc_per_node, resumed.max_restarts, resumed.epochs) == (2, 1, 4)


# ------------------------------------------------------------------------------- real processes


def single_process_reference(**values) -> dict[str, list[tuple[int, float]]]:
    """The same job on one process, in memory: what every distributed run must reproduce."""
    return _reference(tuple(sorted(values.items())))


@functools.cache  # several tests compare against the same job: train it once per session
def _reference(values: tuple[tuple[str, object], ...]) -> dict[str, list[tuple[int, float]]]:
    tracker = RecordingTracker()
    # Its checkpoints in a home of its own: the test's MLOPS_HOME shows only what the job under test wrote.
    with tempfile.TemporaryDirectory() as home, mock.patch.dict(os.environ, {"MLOPS_HOME": home}):
        torch_job.run(TorchTrainConfig.parse({**DIGITS_MLP, **dict(values)}), tracker=tracker)
    return tracker.last_run.metrics


def options(**values) -> list[str]:
    args = []
    for name, value in {**DIGITS_MLP, **values}.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def start(command: list[str], home: Path | None = None, **env) -> subprocess.Popen:
    environment = {**os.environ, "MLOPS_SYSTEM_METRICS_INTERVAL": "0.2", **env}
    if home is not None:
        environment["MLOPS_HOME"] = str(home)
    return subprocess.Popen(
        command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def mlops_train(*args: str, **env) -> subprocess.Popen:
    return start([sys.executable, "-m", "mlops_platform", "train", "torch", *args], **env)


def assert_matches_reference(client, run_id: str, reference: dict) -> None:
    """Final metrics within 1e-4 of one process, epoch metrics at the same steps, no step twice."""
    run = client.get_run(run_id)
    for key in FINAL:
        assert run.data.metrics[key] == pytest.approx(reference[key][-1][1], abs=TOLERANCE), key
    for key in {*STEP_METRICS, *EPOCH_METRICS, *run.data.metrics}:  # system/node_<k>/... included
        history = client.get_metric_history(run_id, key)
        steps = [metric.step for metric in history]
        assert len(steps) == len(set(steps)), f"{key} has a step stored twice: {sorted(steps)}"
        if not key.startswith("system/"):  # the loop's and the test metrics: at the reference's steps
            assert sorted(steps) == [step for step, _ in reference[key]], key
        if key in ("val_loss", "val_accuracy", "train_loss", "train_loss_step", "grad_norm"):
            values = dict(sorted((metric.step, metric.value) for metric in history))
            assert values == pytest.approx(dict(reference[key]), abs=TOLERANCE), key


def only_run(client, experiment_id: str):
    runs = client.search_runs([experiment_id])
    assert len(runs) == 1, [(run.info.run_name, run.info.status) for run in runs]
    return runs[0]


def other_ranks_cut_off(folder: Path) -> dict[str, str]:
    """Environment in which every rank but 0 has, instead of the server, a SQLite tracking URI whose
    file any MLflow client or store of that rank would create, and notes that it got it.

    A `sitecustomize` module on PYTHONPATH runs at the start of every Python process: torchrun's
    workers find their RANK already set, the launcher has none."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import os
            if os.environ.get("RANK", "0") != "0":
                os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///{folder / "other-ranks.db"}"
                open(os.path.join({str(folder)!r}, "cut-off-rank-" + os.environ["RANK"]), "w").close()
            """
        )
    )
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def test_two_processes_log_one_run_equal_to_one_process(
    sqlite_tracking_uri, fresh_experiment, _isolated_home, tmp_path
):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_tracking_uri)
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    cut_off = tmp_path / "cut-off"
    job = mlops_train(
        "--nproc-per-node", "2", *options(epochs=2, experiment=name), **other_ranks_cut_off(cut_off)
    )
    reference = single_process_reference(epochs=2)  # meanwhile, in this process
    output = job.communicate(timeout=400)[0]
    assert job.returncode == 0, output[-4000:]
    run = only_run(client, experiment_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlops.world_size"] == "2"
    assert run.data.params["nproc_per_node"] == "2"
    assert_matches_reference(client, run.info.run_id, reference)
    # System metrics per node, and none unlabelled (the run's own sampler sees only node 0).
    node_cpu = client.get_metric_history(run.info.run_id, "system/node_0/cpu_utilization_percentage")
    assert sorted(metric.step for metric in node_cpu) == [step for step, _ in reference["val_loss"]]
    assert not any(key.startswith("system/") and "/node_" not in key for key in run.data.metrics)
    # Rank 1 ran without the server's address and never opened a tracking store at all.
    assert (cut_off / "cut-off-rank-1").is_file()
    assert not (cut_off / "other-ranks.db").exists()
    # One writer of checkpoints (rank 0), and no temp file of its atomic writes left behind.
    checkpoints = _isolated_home / "checkpoints"
    assert sorted(str(path.relative_to(checkpoints)) for path in checkpoints.rglob("*")) == [
        run.info.run_id,
        f"{run.info.run_id}/last.pt",
    ]


@pytest.mark.slow
def test_users_own_torchrun_works_the_same(sqlite_tracking_uri, fresh_experiment):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_tracking_uri)
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    bad_name, bad_experiment_id = fresh_experiment(sqlite_tracking_uri)

    def torchrun(**values) -> subprocess.Popen:
        return start(
            [
                sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "mlops_platform", "train", "torch", *options(**values),
            ]
        )  # fmt: skip

    job = torchrun(epochs=2, experiment=name)
    # The world size comes from torchrun here: a global batch it does not divide fails on every rank
    # before any run exists, as under `mlops train torch --nproc-per-node`.
    bad = torchrun(epochs=2, experiment=bad_name, batch_size=31)
    reference = single_process_reference(epochs=2)
    output = job.communicate(timeout=400)[0]
    assert job.returncode == 0, output[-4000:]
    run = only_run(client, experiment_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlops.world_size"] == "2"
    assert_matches_reference(client, run.info.run_id, reference)
    bad_output = bad.communicate(timeout=400)[0]
    assert bad.returncode != 0, bad_output[-4000:]
    assert "batch_size=31" in bad_output and "multiple of 2" in bad_output, bad_output[-4000:]
    assert client.search_runs([bad_experiment_id]) == []


@pytest.mark.slow
def test_mlflow_run_with_two_processes_logs_into_its_own_run(sqlite_tracking_uri, fresh_experiment):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_tracking_uri)
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO),
        "-e",
        "train_torch",
        "--env-manager",
        "local",
    ]
    command += ["--experiment-name", name, "-P", "nproc_per_node=2", "-P", "epochs=2"]
    for key, value in DIGITS_MLP.items():
        command += ["-P", f"{key}={value}"]
    # `mlflow run --env-manager local` runs the entry point's `python` from PATH: the venv's must come first.
    job = start(command, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    reference = single_process_reference(epochs=2)
    output = job.communicate(timeout=400)[0]
    assert job.returncode == 0, output[-4000:]
    run = only_run(client, experiment_id)  # mlflow run's own run, no second one
    assert run.info.status == "FINISHED" and run.data.tags["mlops.world_size"] == "2"
    assert_matches_reference(client, run.info.run_id, reference)


# ------------------------------------------------------------------------------------------ faults


def rank_process(job: subprocess.Popen, rank: int, timeout: float = 120) -> psutil.Process:
    """The worker torchrun started for `rank` (a child of the launcher, told apart by its RANK)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(job.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank):
                    return child
            except psutil.Error:  # gone or not readable yet: look again
                pass
        assert job.poll() is None, job.stdout.read()
        time.sleep(0.05)
    raise AssertionError(f"no rank {rank} process within {timeout}s")


def wait_for_checkpoint(home: Path, epoch: int, job: subprocess.Popen, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (home / "checkpoints").glob("*/last.pt"):
            try:
                if load_checkpoint(path)["epoch"] >= epoch:
                    return path
            except Exception:  # not there yet, or replaced while reading: look again
                pass
        assert job.poll() is None, job.stdout.read()
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout}s")


FAULT = {"epochs": 5, "checkpoint_every": 1, "batch_size": 8, "hidden_sizes": "16"}


@pytest.mark.slow
def test_a_killed_rank_is_restarted_and_the_job_continues_the_same_run(
    sqlite_tracking_uri, fresh_experiment, _isolated_home
):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_tracking_uri)
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    job = mlops_train("--nproc-per-node", "2", "--max-restarts", "1", *options(**FAULT, experiment=name))
    checkpoint = wait_for_checkpoint(_isolated_home, 2, job)
    # Rank 0 owns the run: killing it mid-training is the hard case (its journal holds undelivered records).
    rank_process(job, 0).send_signal(signal.SIGKILL)
    reference = single_process_reference(**FAULT)
    output = job.communicate(timeout=600)[0]
    assert job.returncode == 0, output[-12000:]  # both attempts' reports
    run = only_run(client, experiment_id)
    assert run.info.run_id == checkpoint.parent.name and run.info.status == "FINISHED"
    assert run.data.tags["mlops.torchrun_restarts"] == "1"
    assert int(run.data.tags["mlops.resumed_from_epoch"]) >= 2
    assert_matches_reference(client, run.info.run_id, reference)


@pytest.mark.slow
def test_without_restarts_a_killed_rank_fails_the_run_and_resume_from_finishes_it(
    sqlite_tracking_uri, fresh_experiment, _isolated_home
):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_tracking_uri)
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    job = mlops_train("--nproc-per-node", "2", *options(**FAULT, experiment=name))
    wait_for_checkpoint(_isolated_home, 2, job)
    # Rank 0 killed: no rank can end the run; the launcher (`mlops train torch`) marks it FAILED. (A
    # killed rank 1 is the easy case: torchrun stops rank 0 with SIGTERM and rank 0 ends the run KILLED.)
    rank_process(job, 0).send_signal(signal.SIGKILL)
    output = job.communicate(timeout=300)[0]
    assert job.returncode != 0, output[-4000:]
    assert "the training ranks failed" in output, output[-4000:]
    run = only_run(client, experiment_id)
    assert run.info.status == "FAILED", run.info.status
    assert run.data.tags["mlops.error"] == "torchrun: rank 0 died of SIGKILL"
    assert client.search_runs([experiment_id], "attributes.status = 'RUNNING'") == []

    resumed = mlops_train("--nproc-per-node", "2", "--resume-from", run.info.run_id)
    reference = single_process_reference(**FAULT)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output[-4000:]
    run = only_run(client, experiment_id)
    assert run.info.status == "FINISHED"
    assert_matches_reference(client, run.info.run_id, reference)
