"""What software and hardware ran a process, for the ``environment`` block of config.json."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from chorus_shared import __version__ as _shared_version

__all__ = ["TRACKED_PACKAGES", "environment_info"]

# Distribution names whose versions go into config.json. Looked up with importlib.metadata,
# which reads package metadata without importing anything heavy.
TRACKED_PACKAGES: tuple[str, ...] = (
    "chorus-shared",
    "torch",
    "transformers",
    "vllm",
    "openai",
    "datasets",
    "accelerate",
    "peft",
    "trl",
)


def environment_info() -> dict[str, Any]:
    """Returns a JSON-ready description of the software and hardware running this process.

    Holds the Python version, platform, tracked package versions (``None`` when not
    installed), the git commit of this checkout and whether it has uncommitted changes,
    the CPU count and the CUDA device names. Deliberately leaves out the host name, user
    name, paths and every environment variable, so that run folders can be shared.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {name: _package_version(name) for name in TRACKED_PACKAGES},
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "cpu_count": os.cpu_count(),
        "cuda_devices": _cuda_devices(),
    }


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        # A source checkout on PYTHONPATH has no metadata but still knows its version.
        return _shared_version if name == "chorus-shared" else None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def _cuda_devices() -> list[str] | None:
    # Never import torch here: it costs seconds and the run may not need it at all.
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver should not stop a run from starting
        return None
