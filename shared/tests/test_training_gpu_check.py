"""benchmarks/gpu_check: the CPU dry run of every section, and a hung section keeps the table."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_runs_or_explains_every_section(gpu_check, tmp_path: Path) -> None:
    import json

    for name in gpu_check.SECTIONS:
        assert gpu_check.run_section(name, tmp_path, dry_run=True, layers=1) == 0, name
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["status"] in ("ok", "skipped"), result
        if result["status"] == "skipped":
            assert result["reason"], name  # a skipped section says why
        else:
            assert result["rows"], name
    hf = json.loads((tmp_path / "hf_generate.json").read_text())
    if hf["status"] == "ok":
        assert hf["rows"][0]["value"].endswith("tok/s")
    ranker = json.loads((tmp_path / "ranker.json").read_text())
    assert [r["what"] for r in ranker["rows"]][-1] == "ranker batched bf16 / loop fp32"
    text = gpu_check.table(tmp_path, list(gpu_check.SECTIONS))
    for name in gpu_check.SECTIONS:
        assert f"| {name} | " in text


def test_word_tokenizer_gives_one_token_per_word_and_decodes_any_id(gpu_check) -> None:
    tok = gpu_check.word_tokenizer(50)
    ids = tok("w10 w11 w49", add_special_tokens=False)["input_ids"]
    assert ids == [10, 11, 49] and len(tok) == 50
    assert tok.decode([12, 13]) == "w12 w13"
    prompt = tok.apply_chat_template([{"role": "user", "content": "w9"}], tokenize=False)
    assert prompt == "<|im_start|>user\nw9<|im_end|>\n"


def test_a_hung_section_is_reported_and_the_table_still_printed(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "OUT_DIR": str(tmp_path),
        "SECTIONS": "selftest_hang,selftest_ok",
        "LIMIT_S_selftest_hang": "3",
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("| selftest_hang | failed" in x and "timed out after 3s" in x for x in lines)
    assert any(x.startswith("| selftest_ok | ok") and "| selftest | ok |" in x for x in lines)
    assert (tmp_path / "table.md").is_file()
