"""Checkpoints: atomic writes, RNG state capture, and loading with `torch.load(weights_only=True)`.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so the safe unpickler
loads it: no pickled classes, and numpy's RNG state is stored as a tensor plus numbers.
"""

from __future__ import annotations

import io
import os
import queue
import random
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlops_platform.errors import UserError

CHECKPOINT_FORMAT_VERSION = 1
# What a resume reads from a checkpoint (torch_loop.Trainer.state_dict writes them all).
RESUME_KEYS: tuple[str, ...] = (
    "model", "optimizer", "scheduler", "scaler", "epoch", "global_step", "rng", "config",
    "best_metric", "best_epoch", "best_model", "bad_epochs", "stopped_early", "history",
)  # fmt: skip


class CheckpointError(UserError):
    """A checkpoint cannot be used: unreadable (truncated, not a checkpoint, unsafe) or incomplete."""


def serialize_checkpoint(state: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint: a snapshot, so training may go on changing the tensors afterwards."""
    buffer = io.BytesIO()
    torch.save({"format_version": CHECKPOINT_FORMAT_VERSION, **state}, buffer)
    return buffer.getvalue()


def save_checkpoint(state: dict[str, Any] | bytes, path: str | Path) -> Path:
    """Write `state` (a dict, or `serialize_checkpoint`'s bytes) to `path` atomically: a temp file in
    the same folder, fsync, then rename.

    A reader (or a resume after SIGKILL) sees the previous complete checkpoint or the new complete
    one, never a torn file. The folder is fsynced too so the rename itself survives a power loss.
    """
    payload = state if isinstance(state, bytes) else serialize_checkpoint(state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def load_checkpoint(path: str | Path, required: Iterable[str] = RESUME_KEYS) -> dict[str, Any]:
    """Load a checkpoint with the safe unpickler (tensors and plain containers only), onto the CPU;
    `required`: the keys it must hold (by default what a resume reads).

    Raises:
        CheckpointError: the file is not a whole checkpoint of this format (a torn copy, another file,
            a pickle the safe unpickler refuses) or lacks what a resume reads.
    """
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad bytes
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {first_line}); it is damaged or "
            "not a checkpoint of this trainer"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint")
    version = state.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this code reads {CHECKPOINT_FORMAT_VERSION}"
        )
    missing = [key for key in required if key not in state]
    if missing or ("config" in required and not isinstance(state["config"], dict)):
        raise CheckpointError(f"checkpoint {path} is incomplete: no {', '.join(missing) or 'config dict'}")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (CPU and every CUDA device) RNG states, in weights_only-loadable form."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """The inverse of `capture_rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class BackgroundCheckpointWriter:
    """Writes checkpoints (and runs `after_write`, e.g. an upload) on one background thread, in order.

    Training only pays for the snapshot (`serialize_checkpoint`, milliseconds); the fsync and the
    network happen beside it. If the process dies meanwhile, the previous checkpoint is still whole.
    An error in the thread is raised by the next `submit` or by `wait`.
    """

    def __init__(self, after_write: Callable[[Path], None] | None = None) -> None:
        self.after_write = after_write
        self._queue: queue.Queue[tuple[bytes, Path]] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, state: dict[str, Any], path: str | Path) -> None:
        self._raise_error()
        self._queue.put((serialize_checkpoint(state), Path(path)))

    def wait(self) -> None:
        """Block until every submitted checkpoint is written (and uploaded)."""
        self._queue.join()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            payload, path = self._queue.get()
            try:
                if self._error is None:
                    written = save_checkpoint(payload, path)
                    if self.after_write is not None:
                        self.after_write(written)
            except BaseException as error:  # handed to the training thread
                self._error = error
            finally:
                self._queue.task_done()
