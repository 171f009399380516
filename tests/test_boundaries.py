"""House rules from ARCHITECTURE.md that no single package can check about itself.

Packages are discovered from the folders under packages/, so a new paper package is covered
the day its folder appears.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "shared"
SHARED_IMPORT = "chorus_shared"
SHARED_DIST = "chorus-shared"


def discover_packages() -> list[Path]:
    """Return every paper package folder under packages/ (hidden and cache folders excluded)."""
    base = ROOT / "packages"
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


PACKAGES = discover_packages()
PACKAGE_IDS = [p.name for p in PACKAGES]


def import_name(package: Path) -> str:
    """Return the import name of a package folder: packages/alpha_umi -> chorus_alpha_umi."""
    return f"chorus_{package.name}"


def dist_name(package: Path) -> str:
    """Return the distribution name of a package folder: packages/alpha_umi -> chorus-alpha-umi."""
    return f"chorus-{package.name.replace('_', '-')}"


def canonical(name: str) -> str:
    """Return a distribution name normalised as in PEP 503 (case and -_. folded)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def source_files(src: Path) -> list[Path]:
    """Return the .py files under a src/ folder, caches excluded."""
    return sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)


def all_source_files() -> list[Path]:
    """Return every library source file: shared/src and packages/*/src."""
    files = source_files(SHARED / "src")
    for package in PACKAGES:
        files += source_files(package / "src")
    return files


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def imported_modules(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Yield (line, top-level module) for every absolute import, static or by name.

    ``importlib.import_module("x")`` and ``__import__("x")`` count too: a plugin registry that
    loads another paper by name crosses the boundary just the same.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield node.lineno, first.value.split(".")[0]


def foreign_chorus_imports(src: Path, allowed: set[str]) -> list[str]:
    """Return 'file:line imports x' for every chorus_* import under src not in ``allowed``."""
    found = []
    for path in source_files(src):
        for line, module in imported_modules(parse(path)):
            if module.startswith("chorus_") and module not in allowed:
                found.append(f"{rel(path)}:{line} imports {module}")
    return found


def requirement_names(pyproject: Path) -> list[str]:
    """Return the canonical names of every requirement, optional extras included."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    names = []
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, f"{rel(pyproject)}: cannot read requirement {requirement!r}"
        names.append(canonical(match.group(1)))
    return names


# --- discovery -------------------------------------------------------------------------------


def test_packages_are_discovered():
    # Every other per-package test is parametrised over this list; an empty list would
    # quietly turn them all into skips.
    assert PACKAGES, f"no package folders found under {rel(ROOT / 'packages')}/"
    for package in PACKAGES:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", package.name), (
            f"{rel(package)}: folder names must be valid import suffixes (chorus_<name>)"
        )


def test_source_files_are_found():
    files = all_source_files()
    assert any(p.is_relative_to(SHARED / "src") for p in files), "no .py files in shared/src"
    assert len(files) > len(source_files(SHARED / "src")), "no .py files in packages/*/src"


# --- import boundaries -----------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGE_IDS)
def test_package_imports_no_other_package(package: Path):
    found = foreign_chorus_imports(package / "src", {SHARED_IMPORT, import_name(package)})
    assert not found, (
        "a package never imports another package; move what both need into chorus_shared:\n"
        + "\n".join(found)
    )


def test_shared_imports_no_package():
    found = foreign_chorus_imports(SHARED / "src", {SHARED_IMPORT})
    assert not found, "chorus_shared never imports a paper package:\n" + "\n".join(found)


# --- packaging -------------------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGE_IDS)
def test_package_depends_on_shared_only(package: Path):
    pyproject = package / "pyproject.toml"
    assert pyproject.is_file(), f"{rel(package)} has no pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert canonical(project["name"]) == dist_name(package), (
        f"{rel(pyproject)}: distribution must be named {dist_name(package)}"
    )
    names = requirement_names(pyproject)
    assert SHARED_DIST in names, f"{rel(pyproject)} must depend on {SHARED_DIST}"
    others = sorted({n for n in names if n.startswith("chorus-") and n != SHARED_DIST})
    assert not others, f"{rel(pyproject)} depends on other Chorus packages: {others}"


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGE_IDS)
def test_package_cli_entry_point(package: Path):
    project = tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    scripts = project.get("scripts", {})
    target = scripts.get(dist_name(package), "")
    assert target.startswith(f"{import_name(package)}.cli:"), (
        f"expected script {dist_name(package)} = '{import_name(package)}.cli:<function>', "
        f"got {scripts}"
    )


def test_shared_depends_on_no_package():
    names = requirement_names(SHARED / "pyproject.toml")
    chorus = sorted(n for n in names if n.startswith("chorus-"))
    assert not chorus, f"shared/pyproject.toml depends on Chorus packages: {chorus}"


# --- layout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES, ids=PACKAGE_IDS)
def test_package_layout(package: Path):
    name = import_name(package)
    missing = [
        f"{rel(package)}/{part}"
        for part in ("pyproject.toml", "README.md", f"src/{name}/__init__.py", f"src/{name}/cli.py")
        if not (package / part).is_file()
    ]
    if not list(recipes_dir(package).glob("*.yaml")):
        missing.append(f"{rel(package)}/src/{name}/recipes/*.yaml (at least one recipe)")
    if not list((package / "tests").glob("test_*.py")):
        missing.append(f"{rel(package)}/tests/test_*.py (at least one test file)")
    assert not missing, "ARCHITECTURE.md package shape incomplete, missing:\n" + "\n".join(missing)


def recipes_dir(package: Path) -> Path:
    """Return the package's recipes folder: package data (ships in the wheel) or the old place."""
    shipped = package / "src" / import_name(package) / "recipes"
    return shipped if shipped.is_dir() else package / "recipes"


def recipe_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        files += sorted(recipes_dir(package).glob("*.y*ml"))
    return files


def _recipe_id(path: Path) -> str:
    package = path.parents[3] if path.parents[2].name == "src" else path.parents[1]
    return f"{package.name}/{path.name}"


@pytest.mark.parametrize("recipe", recipe_files(), ids=_recipe_id)
def test_recipe_is_a_mapping(recipe: Path):
    assert recipe.suffix == ".yaml", f"{rel(recipe)}: recipes use the .yaml extension"
    data = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data, f"{rel(recipe)} must be a non-empty YAML mapping"


# --- source hygiene --------------------------------------------------------------------------


def test_no_eval_or_exec():
    # Answers are model output: evaluating them would run whatever a model writes. Arithmetic
    # goes through chorus_shared's ast-based evaluator instead. Method calls such as
    # `model.eval()` are fine; only the builtins are banned.
    found = []
    for path in all_source_files():
        for node in ast.walk(parse(path)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            builtin = isinstance(func, ast.Name) and func.id in ("eval", "exec")
            qualified = (
                isinstance(func, ast.Attribute)
                and func.attr in ("eval", "exec")
                and isinstance(func.value, ast.Name)
                and func.value.id == "builtins"
            )
            if builtin or qualified:
                found.append(f"{rel(path)}:{node.lineno}")
    assert not found, "eval/exec called in:\n" + "\n".join(found)


# A path is absolute when it starts the string or follows a separator; URLs such as
# https://host/work/x do not match, file:///home/x does.
ABSOLUTE_PATH = re.compile(r"(?:^|[\s\"'=(\[,;:/])/(?:home|work|Users)/")


def test_no_machine_specific_paths():
    # Paths from a developer's machine break every other checkout; locations come from
    # arguments, the environment or paths relative to the package.
    found = []
    for path in all_source_files():
        for node in ast.walk(parse(path)):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and ABSOLUTE_PATH.search(node.value)
            ):
                found.append(f"{rel(path)}:{node.lineno}: {node.value[:80]!r}")
    assert not found, "absolute machine paths in source strings:\n" + "\n".join(found)


def test_absolute_path_pattern():
    # The rule above is only as good as its pattern; pin what it must and must not catch.
    for bad in ("/home/alice/data", "cache at /work/main/runs", "file:///Users/bob/x", "'/work/'"):
        assert ABSOLUTE_PATH.search(bad), bad
    for good in ("https://github.com/org/work/tree", "runs/work/x", "homework/", "~/.cache/chorus"):
        assert not ABSOLUTE_PATH.search(good), good
