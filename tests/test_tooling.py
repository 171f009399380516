"""The repository's entry points: pins, Makefile targets, CI scripts and container files.

The reproduce-* targets are checked with `make -n`, which prints the commands without running
them, so these tests need no model and take milliseconds.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
CI_RUN = ROOT / ".ci" / "run"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
DOCKER = ROOT / "docker"

TORCH_PIN = "2.13.0"
PAPER_MODEL = "mistralai/Mistral-7B-Instruct-v0.2"
REQUIRED_TARGETS = {
    "setup",
    "test",
    "lint",
    "bench",
    "reproduce-math-debate",
    "reproduce-gsm-debate",
    "reproduce-mmlu-debate",
    "reproduce-bio-debate",
    "docker-debate",
}
# Variables the Makefile reads with `?=`: values from the caller's environment (or from an
# outer `make test MODEL=...` through MAKEFLAGS) would change what the dry runs print.
MAKE_KNOBS = ("MODEL", "BACKEND", "LIMIT", "RUNS", "EXTRA", "RECIPE", "VENV", "PYTHON")


def discover_packages() -> list[Path]:
    """Return every paper package folder under packages/ (hidden and cache folders excluded)."""
    base = ROOT / "packages"
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


PACKAGES = discover_packages()
PACKAGE_IDS = [p.name for p in PACKAGES]


def constraint_pins() -> dict[str, str]:
    """Return {name: specifier} for each line of constraints.txt, comments dropped."""
    pins = {}
    for raw in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", line)
        assert match, f"constraints.txt: cannot read {raw!r}"
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = match.group(2).replace(" ", "")
    return pins


def makefile_targets() -> set[str]:
    """Return the explicit targets defined in the Makefile (rules, not variable assignments)."""
    targets = set()
    for line in MAKEFILE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.%/$()-][A-Za-z0-9_.%/$() -]*?)\s*::?(?!=)", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return targets


def make_dry_run(*args: str) -> list[list[str]]:
    """Return the commands `make -n <args>` would run, each split into argv words."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in MAKE_KNOBS}
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKEFILES"):
        env.pop(var, None)
    result = subprocess.run(
        [make, "-n", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"make -n {' '.join(args)} failed:\n{result.stderr}"
    return [shlex.split(line) for line in result.stdout.splitlines() if line.strip()]


def debate_commands(commands: list[list[str]], sub: str) -> list[list[str]]:
    """Return the `chorus-debate <sub> ...` commands, argv starting at the subcommand."""
    return [
        argv[1:]
        for argv in commands
        if len(argv) > 1 and Path(argv[0]).name == "chorus-debate" and argv[1] == sub
    ]


def option(argv: list[str], flag: str) -> str | None:
    """Return the value after ``flag`` in argv (``--flag value`` or ``--flag=value``)."""
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{WORKFLOW} is not a YAML mapping"
    return data


# --- pins --------------------------------------------------------------------------------------


def test_constraints_pin_torch_exactly():
    assert constraint_pins().get("torch") == f"=={TORCH_PIN}", (
        f"constraints.txt must pin torch=={TORCH_PIN} exactly"
    )


def test_torch_pin_is_the_same_everywhere():
    # CI and the images install torch before constraints.txt is read; they must agree with it.
    pin = constraint_pins()["torch"].removeprefix("==")
    assert f"torch=={pin}" in MAKEFILE.read_text(encoding="utf-8")
    assert re.search(rf'TORCH_VERSION:\s*"?{re.escape(pin)}"?\s*$', WORKFLOW.read_text(), re.M)
    base = (DOCKER / "base.Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(pin)}\s*$", base, re.M)


# --- Makefile ------------------------------------------------------------------------------------


def test_lint_type_checks_shared_and_the_reference_package():
    # `make lint` (and so CI) runs mypy on the paths in the root pyproject's [tool.mypy].
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(encoding="utf-8"), re.M)
    assert recipe and "mypy" in recipe.group(1)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert {"shared/src/chorus_shared", "packages/debate/src/chorus_debate"} <= set(config["files"])
    assert constraint_pins()["mypy"].startswith("==")
    dev = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text(encoding="utf-8"))
    assert any(d.startswith("mypy") for d in dev["project"]["optional-dependencies"]["dev"])
    # mypy needs the dependencies' types: the workflow's lint job installs the workspace first.
    steps = [str(step.get("run", "")) for step in workflow()["jobs"]["lint"]["steps"]]
    setup = next(k for k, run in enumerate(steps) if "make setup" in run)
    assert setup < next(k for k, run in enumerate(steps) if "make lint" in run)


def test_makefile_has_required_targets():
    missing = REQUIRED_TARGETS - makefile_targets()
    assert not missing, f"Makefile lacks targets: {sorted(missing)}"


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGE_IDS)
def test_every_package_has_a_docker_target_and_file(package: Path):
    assert f"docker-{package.name}" in makefile_targets()
    assert (DOCKER / f"{package.name}.Dockerfile").is_file()


def test_reproduce_gsm_debate_with_paper_model():
    commands = make_dry_run(
        "reproduce-gsm-debate", f"MODEL={PAPER_MODEL}", "BACKEND=vllm", "LIMIT=100"
    )
    generate = debate_commands(commands, "generate")
    assert len(generate) == 4, f"expected 4 generate commands, got {commands}"
    for argv in generate:
        assert option(argv, "--model") == f"vllm:{PAPER_MODEL}", argv
        assert option(argv, "--limit") == "100", argv
        assert option(argv, "--method") is None, "the method comes from the recipe"
    rows = [option(argv, "--recipe") for argv in generate]
    # Self-reflection is a row of every table in the paper.
    assert rows == [
        "gsm_mistral7b_single",
        "gsm_mistral7b_reflection",
        "gsm_mistral7b_majority",
        "gsm_mistral7b",
    ]

    report = debate_commands(commands, "report")
    assert len(report) == 1, f"expected 1 report command, got {commands}"
    outs = [option(argv, "--out") for argv in generate]
    assert len(set(outs)) == 4, f"the four methods must write to four run dirs: {outs}"
    # The report must read exactly the runs just produced.
    assert [w for w in outs if w in report[0]] == outs, (report[0], outs)


def test_reproduce_gsm_debate_defaults_to_embedded_model():
    commands = make_dry_run("reproduce-gsm-debate")
    generate = debate_commands(commands, "generate")
    assert len(generate) == 4, f"expected 4 generate commands, got {commands}"
    for argv in generate:
        assert option(argv, "--model") == "default", argv
        assert option(argv, "--recipe").startswith("gsm_default"), argv
        assert option(argv, "--limit") is None, argv
    assert len(debate_commands(commands, "report")) == 1


@pytest.mark.parametrize("task", ["math", "gsm", "mmlu", "bio"])
def test_every_debate_task_dry_runs(task: str):
    commands = make_dry_run(f"reproduce-{task}-debate")
    recipes = [option(argv, "--recipe") for argv in debate_commands(commands, "generate")]
    assert recipes[-1] == f"{task}_default", commands  # the debate row
    assert all(r.startswith(f"{task}_default_") for r in recipes[:-1]), commands


# --- CI ----------------------------------------------------------------------------------------


def test_ci_run_is_an_executable_strict_script():
    assert CI_RUN.is_file(), f"{CI_RUN} is missing"
    assert CI_RUN.stat().st_mode & stat.S_IXUSR, ".ci/run must be executable (chmod +x)"
    text = CI_RUN.read_text(encoding="utf-8")
    assert text.startswith("#!"), ".ci/run needs a shebang"
    assert re.search(r"^set -euo pipefail$", text, re.M)
    # Order matters: lint and test need the environment that setup builds.
    positions = [text.find(f"make {target}") for target in ("setup", "lint", "test")]
    assert all(p >= 0 for p in positions), "expected make setup, make lint and make test"
    assert positions == sorted(positions), "expected make setup, then lint, then test"


def test_ci_run_parses_as_bash():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    result = subprocess.run([bash, "-n", str(CI_RUN)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_workflow_triggers_and_python():
    data = workflow()
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    triggers = data.get("on", data.get(True))
    assert isinstance(triggers, dict) and {"push", "pull_request"} <= set(triggers)
    assert 'python-version: "3.11"' in WORKFLOW.read_text(encoding="utf-8")
    assert "download.pytorch.org/whl/cpu" in WORKFLOW.read_text(encoding="utf-8")


def test_workflow_has_lint_and_a_test_job_per_package():
    jobs = workflow()["jobs"]
    assert "lint" in jobs, f"no lint job in {sorted(jobs)}"
    matrix_entries = set()
    for job in jobs.values():
        matrix = job.get("strategy", {}).get("matrix", {})
        for values in matrix.values():
            if isinstance(values, list):
                matrix_entries.update(v for v in values if isinstance(v, str))
    expected = {"shared", "tests", *(f"packages/{p.name}" for p in PACKAGES)}
    missing = expected - matrix_entries
    assert not missing, f"packages without a CI test job (add them to the matrix): {missing}"


# --- containers ----------------------------------------------------------------------------------


def test_dockerfiles_are_wired_to_the_base_image():
    base = (DOCKER / "base.Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM \$\{BASE_IMAGE\}", base, re.M)
    assert "ENV CHORUS_DATA_DIR=/data" in base or re.search(r"CHORUS_DATA_DIR=/data", base)
    for dockerfile in sorted(DOCKER.glob("*.Dockerfile")):
        if dockerfile.name == "base.Dockerfile":
            continue
        text = dockerfile.read_text(encoding="utf-8")
        name = dockerfile.name.removesuffix(".Dockerfile")
        assert re.search(r"^ARG BASE=chorus/base:\S+$", text, re.M), dockerfile.name
        assert re.search(r"^FROM \$\{BASE\}$", text, re.M), dockerfile.name
        cli = f"chorus-{name.replace('_', '-')}"
        assert f'ENTRYPOINT ["{cli}"]' in text, dockerfile.name
        # Tokens travel by name (-e HF_TOKEN); a value on the command line ends up in logs.
        assert not re.search(r"HF_TOKEN=\S", text), dockerfile.name


def test_dockerignore_keeps_the_context_small():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "runs"} <= ignored, ignored


def test_make_help_lists_every_target_from_its_comment():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        [make, "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = set(re.findall(r"^  make (\S+)", out, re.M))
    public = {t for t in makefile_targets() if not t.startswith(("$", ".")) and "%" not in t}
    assert public <= listed, f"targets without a '## help' comment: {sorted(public - listed)}"
