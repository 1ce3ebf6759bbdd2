"""Device choice, mixed precision, seeding and a record of the machine a run used."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from pneumo_utils.runtime.errors import UserError


def pick_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, then cpu for "auto"; an explicit choice must be available."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"--device {requested} asked for, but PyTorch sees no CUDA GPU: use --device auto"
        )
    if requested == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps asked for, but MPS is not available: use --device auto")
    try:
        return torch.device(requested)
    except RuntimeError as error:
        raise UserError(
            f"unknown --device {requested!r}: use auto, cpu, mps, cuda or cuda:N"
        ) from error


def cpu_has_native_bf16() -> bool:
    """True where bf16 matrix math runs in hardware (AVX-512 BF16 or AMX); elsewhere it is slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype for `device`, or None for plain fp32."""
    if not enabled:
        return None
    if device.type == "cuda":
        # Emulated bf16 (T4, V100) is slow: those cards get fp16 with a GradScaler instead.
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def tune_backends(device: torch.device, deterministic: bool) -> None:
    """Deterministic kernels when asked; otherwise let cuDNN autotune its convolutions (the
    input size never changes within a run, so the search pays off after a few batches)."""
    if deterministic:
        make_deterministic()
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def make_deterministic() -> None:
    """Bit-identical CUDA runs, at the price of slower kernels (cuDNN autotuning is off)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


REPO = Path(__file__).resolve().parents[2]


def _git(*args: str, repo: Path = REPO) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def dtype_name(dtype: torch.dtype | None) -> str:
    """How config.json records an autocast dtype: bfloat16, float16 or off."""
    return str(dtype).removeprefix("torch.") if dtype is not None else "off"


def environment_info(
    device: torch.device, amp_dtype: torch.dtype | None = None, runs_folder: Path | None = None
) -> dict:
    """What produced a run: machine, accelerator, autocast dtype, library versions and the
    code's git state (changes inside `runs_folder`, where its sibling runs are written, aside)."""
    import torchvision

    info = dict(
        platform=platform.platform(),
        python=platform.python_version(),
        processor=_cpu_name(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        numpy=np.__version__,
        device=str(device),
        autocast=dtype_name(amp_dtype),
        torch_threads=torch.get_num_threads(),
    )
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    commit = _git("rev-parse", "HEAD")
    info["git_commit"] = commit or os.environ.get("PNEUMO_GIT_COMMIT")
    # A copy of a checkout without .git (sent to another machine) names its commit in
    # PNEUMO_GIT_COMMIT; whether that copy was clean is then for the sender to say.
    info["git_dirty"] = code_changed(runs_folder=runs_folder) if commit else None
    return info


def code_changed(repo: Path = REPO, runs_folder: Path | None = None) -> bool:
    """Whether the checkout differs from its commit, outside `runs_folder` when that is a
    folder inside the repository (not the repository itself): there the folder of a run that
    trains beside this one is new, and changes no code."""
    spec = ["."]
    root = repo.resolve()
    folder = runs_folder.resolve() if runs_folder is not None else root
    if folder != root and folder.is_relative_to(root):
        spec.append(f":(exclude,literal){folder.relative_to(root)}")
    return bool(_git("status", "--porcelain", "--", *spec, repo=repo))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware_summary(device: torch.device) -> str:
    """One line naming the hardware, for progress output and figure captions."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_name()} ({os.cpu_count()} cores)"
