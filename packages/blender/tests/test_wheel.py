"""Shared + blender installed from built wheels (not editable) find their shipped recipes and
run the CLI end to end."""

from __future__ import annotations

import json
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
            *(str(ROOT / "shared"), str(ROOT / "packages" / "blender")),
        ],
        check=True,
    )
    built = sorted(wheels.glob("*.whl"))
    assert [w.name.split("-")[0] for w in built] == ["chorus_blender", "chorus_shared"], built
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), *map(str, built)], check=True
    )
    return target


def _run(target: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # -I: no cwd or PYTHONPATH on sys.path; ``target`` goes first, so the wheels' copies win
    # over the editable install of the checkout (checked below through __file__).
    code = (
        f"import sys; sys.path.insert(0, {str(target)!r}); "
        "import chorus_blender, chorus_shared; "
        f"assert chorus_blender.__file__.startswith({str(target)!r}), chorus_blender.__file__; "
        f"assert chorus_shared.__file__.startswith({str(target)!r}), chorus_shared.__file__; "
        "from chorus_blender.cli import main; sys.exit(main(sys.argv[1:]))"
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


def test_wheel_ships_the_recipes_and_ranks(installed: Path, tmp_path: Path, tiny_bert) -> None:
    from chorus_blender.ranker import PairRanker

    recipes = installed / "chorus_blender" / "recipes"
    assert (recipes / "ranker_minilm_offline.yaml").is_file()
    assert (recipes / "candidates_offline.yaml").is_file()
    ranker = PairRanker.from_backbone(tiny_bert).save_pretrained(tmp_path / "ranker")
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    data = clean / "items.jsonl"
    data.write_text(json.dumps({"id": "a", "source": "2+2?", "candidates": ["4", "5"]}) + "\n")
    out = clean / "ranked"
    done = _run(installed, clean, "rank", "--ranker", str(ranker), "--input", str(data),
                "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 of 1 items" in done.stdout
    [record] = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(record["ranks"]) in ([1, 2], [1, 1])
