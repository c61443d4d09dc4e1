"""Device and mixed-precision selection.

Pure functions of the config and of what the machine offers (`cuda_available`, `bf16_supported` are
parameters so that the CUDA branches are unit-tested on CPU machines too).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from mlops_platform.errors import UserError


@dataclass(frozen=True)
class Precision:
    """How the loop runs forward passes.

    Attributes:
        device: "cpu" or "cuda".
        amp_dtype: None (full float32), torch.bfloat16 or torch.float16.
        use_grad_scaler: fp16 needs loss scaling against gradient underflow; bf16 has float32's range.
        pin_memory: pinned host tensors make `.to(device, non_blocking=True)` truly asynchronous.
    """

    device: str
    amp_dtype: torch.dtype | None
    use_grad_scaler: bool
    pin_memory: bool

    @property
    def amp_name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        # A disabled scaler is a no-op with the same interface, so the loop has one code path.
        return torch.amp.GradScaler(self.device, enabled=self.use_grad_scaler)


def resolve_device(requested: str, cuda_available: bool | None = None) -> str:
    """auto -> cuda when available else cpu; cuda without a GPU is a UserError."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if requested == "auto":
        return "cuda" if available else "cpu"
    if requested == "cuda" and not available:
        raise UserError("device=cuda but no CUDA device is available here; use device=auto or device=cpu")
    if requested not in ("cpu", "cuda"):
        raise UserError(f"device={requested!r} is not one of auto, cpu, cuda")
    return requested


def resolve_precision(
    device: str, amp: str, cuda_available: bool | None = None, bf16_supported: bool | None = None
) -> Precision:
    """The precision for a resolved device and the `amp` setting.

    AMP is a CUDA feature here: on CPU, `auto` means off and bf16/fp16 are rejected (CPU autocast is
    slower than float32 for these small models).
    """
    if device == "cpu":
        if amp in ("bf16", "fp16"):
            raise UserError(
                f"amp={amp} needs a CUDA device; the resolved device is cpu (use amp=off or auto)"
            )
        return Precision("cpu", None, use_grad_scaler=False, pin_memory=False)
    if bf16_supported is None:
        available = torch.cuda.is_available() if cuda_available is None else cuda_available
        bf16_supported = bool(available and torch.cuda.is_bf16_supported())
    if amp == "auto":
        amp = "bf16" if bf16_supported else "fp16"
    if amp == "bf16" and not bf16_supported:
        raise UserError("amp=bf16 but this GPU does not support bfloat16; use amp=fp16 or auto")
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return Precision("cuda", dtype, use_grad_scaler=dtype is torch.float16, pin_memory=True)


def configure_cpu_threads(threads: int) -> None:
    """Set torch's intra-op CPU threads; 0 keeps torch's default (one per core).

    Why not always all cores: with more OpenMP threads than idle cores (a CI runner or a laptop doing
    other work), the threads spin-wait on each other and a step gets many times slower, not faster.
    """
    if threads > 0:
        torch.set_num_threads(threads)
