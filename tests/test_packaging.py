"""Each package installs and runs alone: declared extras, Docker images, CI, docs that exist.

Packages are discovered from packages/*, so a new package is checked the day it appears.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
PACKAGES = sorted(
    p
    for p in (ROOT / "packages").iterdir()
    if p.is_dir() and not p.name.startswith((".", "_")) and (p / "pyproject.toml").is_file()
)
PACKAGE_IDS = [p.name for p in PACKAGES]
# Packages whose helpers add their test_wheel.py in the same round of work as this test
# (issue 20); the coordinator empties this set when those land. A package not listed here
# must have one now.
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def _project(package: Path) -> dict:
    return tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def shared_extras(package: Path) -> set[str]:
    """Returns the extras of chorus-shared in the package's (non-optional) dependencies."""
    for requirement in _project(package).get("dependencies", []):
        match = _REQUIREMENT.match(requirement)
        assert match, f"{package.name}: cannot read requirement {requirement!r}"
        if re.sub(r"[-_.]+", "-", match.group(1)).lower() == "chorus-shared":
            return {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    raise AssertionError(f"{package.name}/pyproject.toml does not depend on chorus-shared")


def imports_training(package: Path) -> list[str]:
    """Returns 'file:line' for every import of chorus_shared.training in the package's src."""
    found = []
    for path in sorted((package / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "chorus_shared.training" or n.startswith("chorus_shared.training.")
                   for n in names):  # fmt: skip
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGE_IDS)
def test_a_package_that_trains_depends_on_the_train_extra(package: Path) -> None:
    users = imports_training(package)
    if not users:
        pytest.skip(f"{package.name} does not import chorus_shared.training")
    assert "train" in shared_extras(package), (
        f"{package.name} imports chorus_shared.training ({', '.join(users[:3])}) but its "
        "pyproject depends on plain chorus-shared: declare 'chorus-shared[train]'"
    )


def test_the_scan_finds_training_imports() -> None:
    # Guards the test above against a scan that silently finds nothing.
    assert any(imports_training(p) for p in PACKAGES)


def _shared_install_extras(dockerfile: str) -> set[str] | None:
    match = re.search(r'-e\s+"?(?:\./)?shared(?:\[([^\]]*)\])?"?(?:\s|$)', dockerfile)
    if match is None:
        return None
    return {e.strip() for e in (match.group(1) or "").split(",") if e.strip()}


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGE_IDS)
def test_the_docker_image_installs_the_same_shared_extras(package: Path) -> None:
    text = (ROOT / "docker" / f"{package.name}.Dockerfile").read_text(encoding="utf-8")
    wanted = shared_extras(package)
    installed = _shared_install_extras(text)
    if not wanted:
        assert installed in (None, set()), f"{package.name}.Dockerfile installs shared{installed}"
        return
    assert installed is not None and wanted <= installed, (
        f'docker/{package.name}.Dockerfile must install -e "shared[{",".join(sorted(wanted))}]" '
        f"(the package depends on chorus-shared[{','.join(sorted(wanted))}]); found {installed}"
    )
    if "train" in wanted:
        # DeepSpeed (train extra) must not try to compile CUDA kernels at build time.
        assert re.search(r"^ENV DS_BUILD_OPS=0$", text, re.M), package.name


def _alone_job() -> dict:
    jobs = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]
    assert "alone" in jobs, f"no 'alone' job in {WORKFLOW.relative_to(ROOT)}: {sorted(jobs)}"
    return jobs["alone"]


def test_ci_installs_and_tests_each_package_alone() -> None:
    job = _alone_job()
    assert sorted(job["strategy"]["matrix"]["package"]) == sorted(PACKAGE_IDS)
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    install = next(line for line in runs.splitlines() if "./packages/${{ matrix.package }}" in line)
    assert "-e " not in install, "the alone job must install the packages, not editable"
    assert "./shared" in runs
    # No other Chorus package is installed into that environment.
    assert "./packages/" not in runs.replace("./packages/${{ matrix.package }}", "")
    assert 'pytest "packages/${{ matrix.package }}/tests"' in runs


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGE_IDS)
def test_every_package_has_a_wheel_test(package: Path) -> None:
    # ARCHITECTURE.md promises it: the package built as a wheel (not editable) finds its
    # shipped recipes, which an editable install cannot show.
    assert (package / "tests" / "test_wheel.py").is_file(), (
        f"{package.name}: add tests/test_wheel.py (see packages/debate/tests/test_wheel.py)"
    )


# -- docs that point somewhere -----------------------------------------------------------------

_DOC_NAME = re.compile(r"\b([A-Z][A-Z0-9_]+\.md)\b")


def _texts() -> list[Path]:
    files = [*ROOT.glob("*.md"), *ROOT.glob("Makefile"), WORKFLOW]
    for folder in ("shared", "packages", "tests", "docker", ".ci"):
        for path in sorted((ROOT / folder).rglob("*")):
            parts = set(path.relative_to(ROOT).parts)
            if parts & {"build", "__pycache__", ".venv"} or any(".egg-info" in p for p in parts):
                continue
            if path.is_file() and path.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ""}:
                files.append(path)
    return files


def test_every_cited_doc_exists() -> None:
    missing = []
    for path in _texts():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for name in set(_DOC_NAME.findall(text)):
            here = path.parent
            if not any((folder / name).is_file() for folder in (ROOT, here, *here.parents)):
                missing.append(f"{path.relative_to(ROOT)} cites {name}")
    assert not missing, "docs that point nowhere:\n" + "\n".join(sorted(missing))


# -- no test reaches into a virtualenv ---------------------------------------------------------

_ROOT_NAMES = {"ROOT", "REPO", "REPO_ROOT", "REPOSITORY"}


def _is_repo_root(node: ast.expr) -> bool:
    # ROOT, REPO, ... or Path(__file__).parents[n] / .parent chains: the checkout's top folder.
    if isinstance(node, ast.Name):
        return node.id in _ROOT_NAMES
    return "__file__" in ast.unparse(node) and "parent" in ast.unparse(node)


def _walks_the_checkout(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in {"rglob", "glob"}:
            pattern = node.args[0] if node.args else None
            recursive = func.attr == "rglob" or (
                isinstance(pattern, ast.Constant) and "**" in str(pattern.value)
            )
            if recursive and _is_repo_root(func.value):
                lines.append(node.lineno)
        elif ast.unparse(func) == "os.walk" and node.args and _is_repo_root(node.args[0]):
            lines.append(node.lineno)
    return lines


def test_no_test_globs_through_the_whole_checkout() -> None:
    # A recursive glob from the repository root also walks .venv and .venv-vllm (make
    # setup-vllm), whose site-packages hold other projects' pyproject.toml, tests and data:
    # such a test passes or fails by what is installed. Walk named folders instead.
    test_files = [*(ROOT / "tests").glob("*.py"), *(ROOT / "shared" / "tests").glob("*.py")]
    for package in PACKAGES:
        test_files += (package / "tests").glob("*.py")
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(test_files)
        for line in _walks_the_checkout(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not offenders, "recursive globs from the repository root:\n" + "\n".join(offenders)


def test_the_glob_check_catches_a_root_glob() -> None:
    bad = ast.parse("ROOT.rglob('pyproject.toml')\nPath(__file__).parents[1].glob('**/x')\n")
    good = ast.parse("(ROOT / 'packages').glob('*/pyproject.toml')\nsrc.rglob('*.py')\n")
    assert _walks_the_checkout(bad) == [1, 2] and _walks_the_checkout(good) == []


def test_pytest_never_collects_inside_a_virtualenv() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    options = config["tool"]["pytest"]["ini_options"]
    # pytest skips folders holding a virtualenv and hidden folders (.venv, .venv-vllm) unless
    # told otherwise; an explicit norecursedirs replaces the default, so it must keep '.*'.
    assert not options.get("collect_in_virtualenv", False)
    if "norecursedirs" in options:
        assert ".*" in options["norecursedirs"], options["norecursedirs"]
