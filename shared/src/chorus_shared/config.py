"""One recipe dataclass, one source of truth: CLI flags, YAML recipes and the README flag table.

Usage (every package's ``recipes.py`` + ``cli.py`` look like this)::

    @dataclass
    class MyRecipe:
        task: str = field(default="gsm", metadata={"help": "task name"})
        rounds: int = field(default=2, metadata={"help": "debate rounds", "aliases": ["--r"]})
        system: str | None = field(default=None, metadata={"flags": ["--sys"], "help": "..."})
        RUNTIME = ("batch_size",)            # plain class attribute: not a field, not a flag
        def __post_init__(self): ...         # value checks beyond types live here

    add_recipe_arguments(parser, MyRecipe)   # one --flag per field; help from metadata["help"]
    recipe = load_recipe(MyRecipe, args.recipe, "my_pkg", overrides=cli_overrides(args, MyRecipe))
    # YAML ships in src/my_pkg/recipes/*.yaml (package data); `base: other` inherits a recipe.
    check_flag_table(MyRecipe, "packages/my/README.md")  # in a test; update_flag_table() fixes it

Field metadata keys: ``help`` (required for the table), ``flags`` (replaces the default
``--field-name``), ``aliases`` (extra flags, e.g. the original script's names), ``choices``,
``nargs``/``const``/``metavar`` (passed to argparse), ``cli: False`` (recipe-only field).
Worked example: packages/debate/src/chorus_debate/{recipes.py,cli.py,recipes/*.yaml} and the
test ``test_readme_flag_table_matches_the_recipe``. Overview: ARCHITECTURE.md at the root.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

RECIPES_FOLDER = "recipes"
TABLE_START = "<!-- flags:start -->"
TABLE_END = "<!-- flags:end -->"
_MISSING = object()


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest known name, or "" when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return list(dataclasses.fields(cls))


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Return (the type without ``None``, whether ``None`` is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        raise TypeError(f"unsupported recipe field type {tp!r}: one type or one type | None")
    return tp, False


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _flags(f: dataclasses.Field[Any]) -> list[str]:
    flags = list(f.metadata.get("flags") or [f"--{f.name.replace('_', '-')}"])
    return flags + list(f.metadata.get("aliases", ()))


def add_recipe_arguments(parser: argparse._ActionsContainer, cls: type) -> None:
    """Add one flag per field of ``cls`` to ``parser``; flags not given stay out of the namespace.

    ``bool`` fields get ``--x/--no-x``; ``list[...]`` fields repeat (``--model a --model b``).
    """
    hints = _hints(cls)
    for f in _fields(cls):
        if f.metadata.get("cli", True) is False:
            continue
        tp, _optional = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        kwargs["help"] = f.metadata.get("help", "")
        for key in ("choices", "nargs", "const", "metavar"):
            if key in f.metadata:
                kwargs[key] = f.metadata[key]
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is list:
            kwargs["action"] = "append"
            kwargs["type"] = typing.get_args(tp)[0] if typing.get_args(tp) else str
        elif tp in (int, float, str):
            kwargs["type"] = tp
        else:
            raise TypeError(f"field {cls.__name__}.{f.name}: unsupported type {tp!r}")
        parser.add_argument(*_flags(f), **kwargs)


def cli_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """Return the recipe fields that were given on the command line, by field name."""
    names = {f.name for f in _fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def _check_value(cls: type, name: str, value: Any, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{cls.__name__}.{name} must not be null")
    if typing.get_origin(base) is list:
        item = (typing.get_args(base) or (Any,))[0]
        if not isinstance(value, list):
            value = [value]  # one spec where a list is expected is the list of that one spec
        return [_check_value(cls, name, v, item) for v in value]
    if base is Any:
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (base is int and isinstance(value, bool)) or not isinstance(value, base):
        raise ValueError(
            f"{cls.__name__}.{name} must be {getattr(base, '__name__', base)}, "
            f"got {value!r} ({type(value).__name__})"
        )
    return value


# Counts every package shares, checked once here for every recipe: a field with one of these
# names (or ending in ``_<name>``) must be at least 1 (``--limit -1``, ``--window 0`` are
# refused with one line). Every other int field must be >= 0 (a negative count means
# nothing), except ``max_steps`` (-1 = no cap, the transformers convention). Field metadata
# ``min`` overrides both (``None``: no bound, e.g. for a signed offset).
POSITIVE_COUNTS = ("limit", "window", "batch_size", "max_new_tokens", "batch_tokens", "max_length")
_SIGNED_DEFAULTS = {"max_steps": -1}


def count_minimum(f: dataclasses.Field[Any]) -> int | None:
    """Returns the smallest value the int field ``f`` accepts (None: any), see POSITIVE_COUNTS."""
    if "min" in f.metadata:
        minimum = f.metadata["min"]
        return None if minimum is None else int(minimum)
    if f.name in _SIGNED_DEFAULTS:
        return _SIGNED_DEFAULTS[f.name]
    if any(f.name == name or f.name.endswith(f"_{name}") for name in POSITIVE_COUNTS):
        return 1
    return 0


def check_count(name: str, value: int | None, minimum: int | None) -> None:
    """Raises one ``ValueError`` line when the count ``value`` is below ``minimum``; returns
    None. ``None`` values (an unset optional count such as ``--limit``) always pass."""
    if value is None or minimum is None or value >= minimum:
        return
    flag = "--" + name.replace("_", "-")
    raise ValueError(f"{name} must be >= {minimum}, got {value} (flag {flag})")


def count_type(minimum: int = 1, name: str = "a count") -> Callable[[str], int]:
    """Returns an argparse ``type=`` that parses an int and refuses values below ``minimum``
    (for flags outside a recipe dataclass, e.g. ``--window``/``--limit``/``--ray-workers``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _check_counts(cls: type, checked: Mapping[str, Any]) -> None:
    hints = _hints(cls)
    for f in _fields(cls):
        if f.name not in checked:
            continue
        base, _optional = _base_type(hints[f.name])
        value = checked[f.name]
        if base is int:
            check_count(f.name, value, count_minimum(f))
        elif typing.get_origin(base) is list and typing.get_args(base) == (int,):
            for item in value or []:
                check_count(f.name, item, count_minimum(f))


def build_recipe(cls: type[T], data: Mapping[str, Any], source: str = "recipe") -> T:
    """Return ``cls(**data)`` after checking every key is a field and every value its type.

    Unknown keys are answered with the closest field name; every int given is checked
    against its field's minimum (:func:`count_minimum`: limits, windows, batch sizes >= 1,
    other counts >= 0); ``__post_init__`` checks the rest.
    """
    hints = _hints(cls)
    known = [f.name for f in _fields(cls)]
    for key in data:
        if key not in known:
            raise ValueError(
                f"{source}: unknown field {key!r}{did_you_mean(key, known)}; "
                f"known fields: {', '.join(known)}"
            )
    checked = {k: _check_value(cls, k, v, hints[k]) for k, v in data.items()}
    _check_counts(cls, checked)
    return cls(**checked)


def _recipes_root(package: str) -> Traversable:
    return resources.files(package).joinpath(RECIPES_FOLDER)


def available_recipes(package: str) -> list[str]:
    """Return the names of the recipes shipped in ``<package>/recipes/*.yaml``."""
    root = _recipes_root(package)
    if not root.is_dir():
        return []
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str, what: str = "recipe") -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        # One line naming the file and line, not PyYAML's multi-line traceback.
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(
            f"{what} {where}: not valid YAML ({problem}); fix that line of the file"
        ) from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} {source} must be a mapping of field: value")
    return loaded


def load_yaml_mapping(path: str | Path, what: str = "recipe") -> dict[str, Any]:
    """Returns the mapping in the YAML file ``path`` (empty file: ``{}``).

    Every problem is one ``ValueError``/``FileNotFoundError`` line naming the file (and the
    line of a syntax error), for loaders outside :func:`load_recipe` (training recipes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text ({err.reason})") from None
    return _read_yaml(text, str(path), what=what)


def _locate(name_or_path: str, package: str, relative_to: Path | None) -> tuple[str, str]:
    """Return (text, source name) of a recipe given by path or by shipped name."""
    candidates = [Path(name_or_path)]
    if relative_to is not None:
        candidates.insert(0, relative_to / name_or_path)
    for path in candidates:
        if path.is_file():
            return path.read_text(), str(path)
    stem = name_or_path.removesuffix(".yaml")
    shipped = _recipes_root(package).joinpath(f"{stem}.yaml")
    if shipped.is_file():
        return shipped.read_text(), f"{package}:{RECIPES_FOLDER}/{stem}.yaml"
    names = available_recipes(package)
    raise FileNotFoundError(
        f"no recipe {name_or_path!r}{did_you_mean(stem, names)}: not a file, and not one of "
        f"the recipes shipped with {package} ({', '.join(names) or 'none'})"
    )


def resolve_recipe_data(name_or_path: str, package: str) -> dict[str, Any]:
    """Return the recipe's fields with every ``base:`` merged in (the child's values win)."""
    chain: list[str] = []
    data: dict[str, Any] = {}
    current: str | None = name_or_path
    relative_to: Path | None = None
    layers: list[dict[str, Any]] = []
    while current is not None:
        text, source = _locate(current, package, relative_to)
        if source in chain:
            raise ValueError(f"recipe inheritance cycle: {' -> '.join([*chain, source])}")
        chain.append(source)
        layer = _read_yaml(text, source)
        base = layer.pop("base", None)
        if base is not None and not isinstance(base, str):
            raise ValueError(f"recipe {source}: base must be a recipe name or path, got {base!r}")
        layers.append(layer)
        relative_to = Path(source).parent if Path(source).is_file() else None
        current = base
    for layer in reversed(layers):
        data.update(layer)
    return data


def load_recipe(
    cls: type[T],
    name_or_path: str | None,
    package: str,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Return the recipe named (shipped in ``package``) or at a path, with ``overrides`` on top.

    ``overrides`` are usually :func:`cli_overrides`; ``None`` values in it are ignored.
    """
    data = resolve_recipe_data(name_or_path, package) if name_or_path else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_recipe(cls, data, source=name_or_path or "flags")


def _type_name(tp: Any) -> str:
    base, optional = _base_type(tp)
    if typing.get_origin(base) is list:
        name = f"list[{(typing.get_args(base) or (Any,))[0].__name__}]"
    else:
        name = getattr(base, "__name__", str(base))
    return f"{name} or null" if optional else name


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _MISSING


def render_flag_table(cls: type) -> str:
    """Return the markdown table of ``cls``'s flags: flag(s), recipe field, type, default, help."""
    hints = _hints(cls)
    rows = ["| flag | recipe field | type | default | meaning |", "|---|---|---|---|---|"]
    for f in _fields(cls):
        flags = (
            "(recipe only)"
            if f.metadata.get("cli", True) is False
            else ", ".join(f"`{x}`" for x in _flags(f))
        )
        default = _default(f)
        shown = "required" if default is _MISSING else f"`{json.dumps(default)}`"
        help_text = str(f.metadata.get("help", "")).replace("|", "\\|")
        rows.append(
            f"| {flags} | `{f.name}` | {_type_name(hints[f.name])} | {shown} | {help_text} |"
        )
    return "\n".join(rows) + "\n"


def _split(text: str, where: str) -> tuple[str, str, str]:
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"{where} has no {TABLE_START} ... {TABLE_END} block for the flag table")
    return text[: start + len(TABLE_START)], text[start + len(TABLE_START) : end], text[end:]


def check_flag_table(cls: type, readme: str | Path) -> None:
    """Raise ``ValueError`` naming the fix when ``readme``'s flag table differs from ``cls``."""
    path = Path(readme)
    _, table, _ = _split(path.read_text(), str(path))
    expected = render_flag_table(cls)
    if table.strip() != expected.strip():
        diff = "\n".join(
            difflib.unified_diff(
                table.strip().splitlines(), expected.strip().splitlines(), "README", "dataclass"
            )
        )
        raise ValueError(
            f"{path}: flag table is out of date with {cls.__name__}; regenerate it with "
            f"chorus_shared.config.update_flag_table({cls.__name__}, {str(path)!r})\n{diff}"
        )


def update_flag_table(cls: type, readme: str | Path) -> bool:
    """Rewrite ``readme``'s flag table from ``cls``; return whether the file changed."""
    path = Path(readme)
    text = path.read_text()
    head, _, tail = _split(text, str(path))
    new = f"{head}\n{render_flag_table(cls)}{tail}"
    if new != text:
        path.write_text(new)
    return new != text
