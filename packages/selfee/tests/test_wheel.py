"""Shared + selfee installed from built wheels (not editable) find their shipped recipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chorus_shared.testing import FakeOpenAIServer

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
            *(str(ROOT / "shared"), str(ROOT / "packages" / "selfee")),
        ],
        check=True,
    )
    built = sorted(wheels.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == ["chorus_selfee", "chorus_shared"], built
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), *map(str, built)], check=True
    )
    return target


def _run(target: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # -I: no cwd or PYTHONPATH on sys.path; ``target`` goes first, so the wheels' copies win
    # over the editable install of the checkout (checked below through __file__).
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r}); "
        "import chorus_selfee, chorus_shared; "
        f"assert chorus_selfee.__file__.startswith({str(target)!r}), chorus_selfee.__file__; "
        f"assert chorus_shared.__file__.startswith({str(target)!r}), chorus_shared.__file__; "
        "from chorus_selfee.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OPENAI_API_KEY"] = "sk-test"
    return subprocess.run(
        [sys.executable, "-I", "-c", code, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_wheel_install_runs_infer_with_a_shipped_recipe(installed: Path, tmp_path: Path) -> None:
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    # The wheel holds the recipes as package data and nothing from the source checkout.
    assert (installed / "chorus_selfee" / "recipes" / "paper_llama7b.yaml").is_file()
    out = clean / "run"
    with FakeOpenAIServer(lambda body: "Blue.\n\n### Feedback 1:\nRevision is not needed.") as s:
        argv = ["infer", "--recipe", "paper_llama7b", "--model", f"openai:m@{s.base_url}"]
        argv += ["--limit", "1", "--max-num-revision", "0", "--out", str(out)]
        data = ROOT.parent / "shared" / "data"  # found by the loader from a checkout only
        argv += ["--data-dir", str(data)] if data.is_dir() else []
        done = _run(installed, clean, *argv)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["infer_temperature"] == 0.7  # read from the shipped recipe
    assert json.loads(done.stdout)["items"] == 1
