"""glibc malloc tuning for CPU generation: applied through mallopt, output unchanged."""

from __future__ import annotations

import ctypes.util
import platform
from pathlib import Path

import pytest

from chorus_shared.models import SamplingParams, load_chat_model
from chorus_shared.models.hf import tune_glibc_malloc

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
    or not ctypes.util.find_library("c"),
    reason="mallopt is glibc's",
)  # fmt: skip


@glibc
def test_tuning_is_accepted_by_glibc_and_keeps_greedy_output(tiny_model_dir: Path) -> None:
    model = load_chat_model(f"hf:{tiny_model_dir}", dtype="float32")
    convs = [[{"role": "user", "content": f"Add {k} and {k + 1}."}] for k in range(3)]
    params = SamplingParams(max_new_tokens=8)
    before = model.chat(convs, params)
    assert tune_glibc_malloc() is True
    after = model.chat(convs, params)
    assert [c.text for c in after] == [c.text for c in before]
