"""Run directories: a resumable, kill-safe home for one experiment's outputs.

A run directory holds

- ``config.json``   the resolved recipe plus an ``environment`` block (versions, git commit);
- ``records.jsonl`` one JSON line per finished item, each with a unique ``id``;
- ``metrics.json``  the aggregate numbers;
- ``report.md``     tables and links to the PNG plots stored next to it.

Running the same command again resumes: :meth:`RunDir.create` reopens the folder when the
stored config matches, and :func:`pending` drops the items that already have a record.
Every record is flushed and fsync'ed before :meth:`RunDir.append` returns, so a run killed
at any moment loses at most the item it was working on.

Typical use::

    with RunDir.create(args.output, recipe_dict, overwrite=args.overwrite) as run:
        for item in progress(pending(items, run), desc="debate"):
            run.append({"id": item["id"], **solve(item)})
        run.write_metrics(summarise(run.records()))
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from chorus_shared import __version__ as _shared_version

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl; runs then go unlocked
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "RECORDS_FILE",
    "REPORT_FILE",
    "RESUME_IGNORED_KEYS",
    "TRACKED_PACKAGES",
    "RunConfigMismatch",
    "RunDir",
    "environment_info",
    "pending",
    "progress",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
RECORDS_FILE = "records.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"

# Only the environment block and the "runtime" block (knobs that change speed, not results:
# batch size, window, data folder) may change between a run and its resumption. Everything
# else (model, data, limit, seeds, ...) changes what the records mean, so mixing is refused.
RESUME_IGNORED_KEYS: frozenset[str] = frozenset({"environment", "runtime"})

# Distribution names whose versions go into config.json. Looked up with importlib.metadata,
# which reads package metadata without importing anything heavy.
TRACKED_PACKAGES: tuple[str, ...] = (
    "chorus-shared",
    "torch",
    "transformers",
    "vllm",
    "openai",
    "datasets",
    "accelerate",
    "peft",
    "trl",
)

_NO_PROGRESS_ENV = "CHORUS_NO_PROGRESS"

T = TypeVar("T")


class RunConfigMismatch(ValueError):
    """The folder already holds a run made with a different config."""


class RunDir:
    """One experiment's output folder; see the module docstring for the layout.

    Build it with :meth:`create` (new run or resumption) or :meth:`open` (read an existing
    run). The records file is opened for appending on the first :meth:`append` and stays
    open, under an exclusive lock, until :meth:`close` or the end of a ``with`` block.
    """

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        # Private: use RunDir.create or RunDir.open, which check the folder first.
        self._path = path
        self._config = config
        self._writer: IO[bytes] | None = None
        self._ids: set[str] | None = None

    # -- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, config: dict[str, Any], *, overwrite: bool = False) -> RunDir:
        """Start a run in ``path``, or resume the one already there.

        Writes ``config.json`` (``config`` plus an ``environment`` block) for a new run.
        When the folder already holds a run, its stored config must equal ``config``
        (ignoring :data:`RESUME_IGNORED_KEYS`), otherwise :class:`RunConfigMismatch` is
        raised; ``overwrite=True`` instead deletes the old run's files first.

        Returns the :class:`RunDir`.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"run folder {path} exists and is not a directory")
        # "environment" is ours: drop a stale copy (e.g. from ``RunDir.open(...).config``).
        wanted = _jsonable({k: v for k, v in config.items() if k != "environment"}, what="config")

        config_file = path / CONFIG_FILE
        if overwrite:
            _remove_run_files(path)
        elif config_file.exists():
            stored = _read_json(config_file)
            differences = _config_differences(stored, wanted)
            if differences:
                raise RunConfigMismatch(_mismatch_message(path, differences))
            logger.info("resuming run in %s", path)
            return cls(path, stored)
        elif (path / RECORDS_FILE).exists():
            # Records without a config cannot be checked against the new config.
            raise RunConfigMismatch(
                f"{path} holds {RECORDS_FILE} but no {CONFIG_FILE}, so it cannot be resumed "
                "safely; pass a new output folder or --overwrite"
            )

        path.mkdir(parents=True, exist_ok=True)
        stored = {**wanted, "environment": environment_info()}
        _atomic_write_text(config_file, _dump_json(stored))
        return cls(path, stored)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Open an existing run for reading (and further appends).

        Returns the :class:`RunDir`; raises ``FileNotFoundError`` when ``path`` is missing or
        has no ``config.json``.
        """
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"run folder {path} does not exist")
        config_file = path / CONFIG_FILE
        if not config_file.is_file():
            raise FileNotFoundError(
                f"{path} is not a run folder: {CONFIG_FILE} is missing "
                "(runs are made with RunDir.create)"
            )
        return cls(path, _read_json(config_file))

    # -- properties ---------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Returns the run folder."""
        return self._path

    @property
    def config(self) -> dict[str, Any]:
        """Returns a copy of the stored config, ``environment`` block included."""
        return copy.deepcopy(self._config)

    @property
    def records_path(self) -> Path:
        """Returns the path of ``records.jsonl`` (which may not exist yet)."""
        return self._path / RECORDS_FILE

    # -- records ------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Returns every complete record in file order.

        An unterminated last line (left by a kill in the middle of a write) is ignored; a
        malformed complete line raises ``ValueError`` naming the file and line number.
        """
        records, _ = _read_records(self.records_path)
        return records

    def finished_ids(self) -> set[str]:
        """Returns the ids of the finished records, as strings."""
        if self._ids is not None:
            return set(self._ids)
        return {_id_key(record["id"]) for record in self.records()}

    def append(self, record: dict[str, Any]) -> None:
        """Append one finished record and force it to disk. Returns ``None``.

        The record needs an ``id`` (str or int) not used by an earlier record.
        """
        if "id" not in record:
            raise ValueError(f"record has no 'id' key (keys: {sorted(record)})")
        key = _id_key(record["id"])
        # Serialise before touching the file so a bad record cannot leave half a line.
        line = (_dump_line(record) + "\n").encode("utf-8")
        writer, ids = self._open_writer()
        if key in ids:
            raise ValueError(f"record id {record['id']!r} is already in {self.records_path}")
        writer.write(line)
        writer.flush()
        os.fsync(writer.fileno())
        ids.add(key)

    def close(self) -> None:
        """Close the records file (if open) and release its lock. Returns ``None``."""
        if self._writer is not None:
            self._writer.close()  # closing the descriptor also drops the flock
            self._writer = None
            self._ids = None

    def __del__(self) -> None:
        # Every record is already on disk, so a forgotten close() loses nothing; closing
        # here just releases the descriptor and lock without a ResourceWarning.
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open_writer(self) -> tuple[IO[bytes], set[str]]:
        if self._writer is not None and self._ids is not None:
            return self._writer, self._ids
        self._path.mkdir(parents=True, exist_ok=True)
        writer = open(self.records_path, "ab")  # noqa: SIM115 - kept open across appends
        try:
            _lock(writer, self.records_path)
            # Read only after taking the lock, so nobody appends between reading and
            # truncating.
            records, valid_bytes = _read_records(self.records_path)
            size = os.fstat(writer.fileno()).st_size
            if size > valid_bytes:
                logger.warning(
                    "%s ends with a partial line (%d bytes) from an interrupted write; dropping it",
                    self.records_path,
                    size - valid_bytes,
                )
                # O_APPEND writes go to the new end of file, right after the last newline.
                os.ftruncate(writer.fileno(), valid_bytes)
                os.fsync(writer.fileno())
            ids = {_id_key(record["id"]) for record in records}
        except BaseException:
            writer.close()
            raise
        self._writer, self._ids = writer, ids
        return writer, ids

    # -- metrics, report, figures -------------------------------------------------------

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        """Write ``metrics.json`` atomically. Returns its path."""
        target = self._path / METRICS_FILE
        _atomic_write_text(target, _dump_json(_jsonable(metrics, what="metrics")))
        return target

    def read_metrics(self) -> dict[str, Any]:
        """Returns the contents of ``metrics.json``; ``FileNotFoundError`` if not written."""
        target = self._path / METRICS_FILE
        if not target.is_file():
            raise FileNotFoundError(f"{target} does not exist: no metrics written for this run")
        return _read_json(target)

    def write_report(self, markdown: str) -> Path:
        """Write ``report.md`` atomically (a trailing newline is added if missing).

        Returns its path.
        """
        target = self._path / REPORT_FILE
        _atomic_write_text(target, markdown if markdown.endswith("\n") else markdown + "\n")
        return target

    def figure_path(self, name: str) -> Path:
        """Returns the path for plot ``name`` in the run folder (``.png`` added if no suffix)."""
        if not name or Path(name).name != name or name in {".", ".."}:
            raise ValueError(f"figure name must be a plain file name, got {name!r}")
        if not Path(name).suffix:
            name += ".png"
        return self._path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self._path)!r})"


def pending(items: Sequence[dict[str, Any]], run: RunDir) -> list[dict[str, Any]]:
    """Returns the items whose ``id`` has no record in ``run`` yet, in their original order."""
    finished = run.finished_ids()
    seen: set[str] = set()
    todo = []
    for index, item in enumerate(items):
        if "id" not in item:
            raise ValueError(f"item {index} has no 'id' key (keys: {sorted(item)})")
        key = _id_key(item["id"])
        # A repeated id would make the second append fail half-way through a run.
        if key in seen:
            raise ValueError(f"item id {item['id']!r} appears more than once in the items")
        seen.add(key)
        if key not in finished:
            todo.append(item)
    return todo


def environment_info() -> dict[str, Any]:
    """Returns a JSON-ready description of the software and hardware running this process.

    Holds the Python version, platform, tracked package versions (``None`` when not
    installed), the git commit of this checkout and whether it has uncommitted changes,
    the CPU count and the CUDA device names. Deliberately leaves out the host name, user
    name, paths and every environment variable, so that run folders can be shared.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {name: _package_version(name) for name in TRACKED_PACKAGES},
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "cpu_count": os.cpu_count(),
        "cuda_devices": _cuda_devices(),
    }


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """Returns an iterator over ``iterable`` that draws a tqdm progress bar on stderr.

    ``CHORUS_NO_PROGRESS=1`` turns the bar off. When stderr is not a terminal (CI logs,
    redirected output) the bar still prints, but at most every five seconds.
    """
    from tqdm.auto import tqdm

    disabled = os.environ.get(_NO_PROGRESS_ENV, "").strip().lower() in {"1", "true", "yes"}
    interactive = sys.stderr is not None and sys.stderr.isatty()
    return iter(
        tqdm(
            iterable,
            total=total,
            desc=desc or None,
            file=sys.stderr,
            disable=disabled,
            mininterval=0.1 if interactive else 5.0,
            dynamic_ncols=interactive,
        )
    )


# -- helpers ------------------------------------------------------------------------------


def _id_key(value: Any) -> str:
    # Data loaders may give int or str ids; comparing as strings keeps resume working
    # whichever the loader used.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"record id must be a str or int, got {type(value).__name__}: {value!r}")
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON: {value!r}")


def _jsonable(data: dict[str, Any], *, what: str) -> dict[str, Any]:
    # Round-trip through JSON so an in-memory config compares equal to its stored copy
    # (tuples become lists, Paths become strings).
    try:
        return json.loads(json.dumps(data, default=_json_default))
    except TypeError as err:
        raise TypeError(f"{what} is not JSON-serialisable: {err}") from err


def _dump_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def _dump_line(record: dict[str, Any]) -> str:
    try:
        return json.dumps(record, ensure_ascii=False, default=_json_default)
    except TypeError as err:
        raise TypeError(f"record {record.get('id')!r} is not JSON-serialisable: {err}") from err


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Returns the complete records of ``path`` and the byte length they span."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    valid_bytes = data.rfind(b"\n") + 1  # 0 when there is no complete line at all
    records = []
    for lineno, raw in enumerate(data[:valid_bytes].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}:{lineno}: corrupted record line: {err}") from err
        if not isinstance(record, dict) or "id" not in record:
            raise ValueError(f"{path}:{lineno}: a record must be a JSON object with an 'id'")
        records.append(record)
    return records, valid_bytes


def _lock(handle: IO[bytes], path: Path) -> None:
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        raise RuntimeError(
            f"{path} is being written by another process (or another RunDir in this one); "
            "two writers would duplicate records"
        ) from err


def _atomic_write_text(path: Path, text: str) -> None:
    # Write beside the target and rename over it, so readers never see half a file and a
    # kill leaves either the old or the new version.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_run_files(path: Path) -> None:
    if not path.is_dir():
        return
    # Only files a run writes are removed: the folder may hold things the user put there.
    names = {CONFIG_FILE, RECORDS_FILE, METRICS_FILE, REPORT_FILE}
    for child in path.iterdir():
        is_run_file = child.name in names or child.suffix == ".png"
        is_leftover_tmp = child.name.startswith(".") and child.name.endswith(".tmp")
        if child.is_file() and (is_run_file or is_leftover_tmp):
            child.unlink()


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: data}


def _config_differences(
    stored: dict[str, Any], wanted: dict[str, Any]
) -> list[tuple[str, Any, Any]]:
    missing = object()
    old = _flatten({k: v for k, v in stored.items() if k not in RESUME_IGNORED_KEYS})
    new = _flatten({k: v for k, v in wanted.items() if k not in RESUME_IGNORED_KEYS})
    differences = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key, missing), new.get(key, missing)
        if before != after:
            differences.append(
                (
                    key,
                    "<absent>" if before is missing else before,
                    "<absent>" if after is missing else after,
                )
            )
    return differences


def _mismatch_message(path: Path, differences: list[tuple[str, Any, Any]]) -> str:
    lines = [f"{path} already holds a run with a different config:"]
    for key, before, after in differences:
        lines.append(f"  {key}: {before!r} (stored) -> {after!r} (now)")
    lines.append(
        "Resuming would mix records from both configs. Pass a new output folder, "
        "or --overwrite to delete the old run."
    )
    return "\n".join(lines)


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        # A source checkout on PYTHONPATH has no metadata but still knows its version.
        return _shared_version if name == "chorus-shared" else None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def _cuda_devices() -> list[str] | None:
    # Never import torch here: it costs seconds and the run may not need it at all.
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver should not stop a run from starting
        return None
