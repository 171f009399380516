"""Shared + tripost installed from built wheels (not editable) find their shipped recipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools")
    wheels = tmp_path_factory.mktemp("wheels")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    # No build isolation and no dependencies: the test checks packaging, not the network.
    subprocess.run(
        [
            *pip,
            *("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels)),
            *(str(ROOT / "shared"), str(ROOT / "packages" / "tripost")),
        ],
        check=True,
    )
    built = sorted(wheels.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == ["chorus_shared", "chorus_tripost"], built
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), *map(str, built)], check=True
    )
    return target


def _run(target: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # -I: no cwd or PYTHONPATH on sys.path; ``target`` goes first, so the wheels' copies win
    # over the editable install of the checkout (checked below through __file__).
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r}); "
        "import chorus_tripost, chorus_shared; "
        f"assert chorus_tripost.__file__.startswith({str(target)!r}), chorus_tripost.__file__; "
        f"assert chorus_shared.__file__.startswith({str(target)!r}), chorus_shared.__file__; "
        "from chorus_tripost.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The installed wheel is not beside the data folder: point the loader at it.
    env.setdefault("CHORUS_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    return subprocess.run(
        [sys.executable, "-I", "-c", code, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_wheel_install_finds_the_shipped_recipes_and_data_readers(
    installed: Path, tmp_path: Path
) -> None:
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    # The wheel holds the recipes and the DeepSpeed config as package data.
    assert (installed / "chorus_tripost" / "recipes" / "arithmetic_llama7b.yaml").is_file()
    assert (installed / "chorus_tripost" / "configs" / "ds_zero2_offload.json").is_file()
    out = clean / "items.jsonl"
    argv = ["make-data", "--task", "word_sort", "--split", "train", "--limit", "2"]
    done = _run(installed, clean, *argv, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 2
    argv = ["evaluate", "--recipe", "arithmetic_llama7b", "--eval-limit", "-1"]
    done = _run(installed, clean, *argv, "--out", str(clean / "x"))
    assert done.returncode == 2 and "eval_limit must be >= 1" in done.stderr
    assert not (clean / "x").exists()
