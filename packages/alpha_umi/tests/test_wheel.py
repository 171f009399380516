"""Shared + alpha_umi installed from built wheels (not editable) find their shipped recipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"


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
            *(str(ROOT / "shared"), str(ROOT / "packages" / "alpha_umi")),
        ],
        check=True,
    )
    built = sorted(wheels.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == ["chorus_alpha_umi", "chorus_shared"], built
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), *map(str, built)], check=True
    )
    return target


def _run(target: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # -I: no cwd or PYTHONPATH on sys.path; ``target`` goes first, so the wheels' copies win
    # over the editable install of the checkout (checked below through __file__).
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r}); "
        "import chorus_alpha_umi, chorus_shared; "
        f"assert chorus_alpha_umi.__file__.startswith({str(target)!r}), chorus_alpha_umi.__file__; "
        f"assert chorus_shared.__file__.startswith({str(target)!r}), chorus_shared.__file__; "
        "from chorus_alpha_umi.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-I", "-c", code, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_wheel_install_evaluates_with_a_shipped_recipe(
    installed: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    # The wheel holds the agent and GLPFT recipes as package data.
    recipes = installed / "chorus_alpha_umi" / "recipes"
    assert (recipes / "static_default.yaml").is_file()
    assert (recipes / "glpft_llama2_7b_zero3.yaml").is_file()
    out = clean / "run"
    argv = ["evaluate", "--recipe", "static_default", "--model", f"hf:{tiny_model_dir}"]
    argv += ["--limit", "1", "--data-dir", str(FIXTURES), "--out", str(out)]
    argv += ["--planner-max-new-tokens", "4", "--caller-max-new-tokens", "4"]
    argv += ["--summarizer-max-new-tokens", "4"]
    done = _run(installed, clean, *argv)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["limit"] == 1 and config["recipe"]["split"] == "out_of_domain"
    assert len(config["item_ids"]) == 3
    assert json.loads((out / "metrics.json").read_text())["coverage"] == "3 of 3 items"
