"""Run directories: a resumable, kill-safe, single-writer home for one experiment's outputs.

A run directory holds

- ``config.json``   the resolved recipe plus an ``environment`` block (versions, git commit)
  and, when the caller gives one, a ``data`` fingerprint (size and SHA-256 of every data
  file read; see :func:`chorus_shared.data.track_data_reads`);
- ``records.jsonl`` one JSON line per attempted item, each with an ``id``;
- ``metrics.json``  the aggregate numbers;
- ``report.md``     tables and links to the PNG plots stored next to it;
- ``manifest.json`` the names of the files this run wrote (the list ``--overwrite`` deletes);
- ``.lock``         the writer lock (the portable ``filelock`` package: ``flock`` on POSIX,
  ``msvcrt`` on Windows), held from :meth:`RunDir.create` to ``close``
  (a run read with :meth:`RunDir.open` takes it only at its first append).

The contract every package relies on:

- **A finished item** is a record line, terminated by a newline, whose ``error`` field is
  absent or empty. A record with a non-empty ``error`` (the reason, e.g. the server and its
  HTTP status) is an *errored* item: it is kept for the record and counted as an error in
  metrics, but it is not done, so a resume retries it and a later finished record for the
  same id supersedes it. A second finished record for an id is refused on write and skipped
  (and counted) on read. An unterminated last line (a kill in the middle of a write) is not
  a record; it is reported and dropped.
- **Resume** (the same command again) reopens the folder only when the stored config equals
  the new one outside :data:`RESUME_IGNORED_KEYS` (``environment`` and ``runtime``: batch
  size, window, data folder, request timeout, ...). Anything else — model, seeds, limit, the
  data fingerprint — differs, and the run is refused with the differing keys listed, so two
  configs or two datasets never mix in one folder. Finished ids are skipped; errored ones are
  retried.
- **One writer.** :meth:`RunDir.create` takes an exclusive lock before touching any file; a
  second writer (or an ``--overwrite`` while another process writes) is refused at once.
- **Overwrite** deletes exactly the files listed in ``manifest.json`` (for a run made before
  manifests existed: the four standard files, but only when ``config.json`` was written by
  Chorus), the manifest itself and leftovers of an interrupted atomic write (``.*.tmp``),
  never anything else a user keeps there. A folder that is not a Chorus run (no manifest,
  no Chorus ``config.json``) but holds files of those names is refused and nothing is
  deleted. The lock file stays (another process may be waiting on it).
- **Readers validate.** :meth:`RunDir.read_records` checks ids, required fields, that each
  record belongs to this run (``match``: e.g. its task; ``ids``: the run's item set) and
  returns the valid records with every skip counted and explained by line number; it never
  raises on a bad line and never counts an item twice. A package's own later checks reject
  a record with :meth:`RecordSet.skip`, which keeps the true line number.
- **Scores are derived.** Records hold what was generated (replies, judge verdicts); metrics
  are recomputed from them by ``evaluate``, so ``metrics.json`` and ``report.md`` can always
  be rebuilt, also into another folder (:class:`OutputFolder`) when the run folder is
  read-only; that folder must not be a run itself (another run's metrics are never
  overwritten).
- **A run that never started leaves nothing.** When the ``with RunDir.create(...)`` block
  (or a caller's ``except`` calling :meth:`RunDir.discard_if_empty`) fails before the first
  record of a run this object created (a model that cannot load), the run's files and the
  folders ``create`` made are removed again, but only when the folder holds nothing else:
  a checkpoint, a subfolder or a user's file keeps everything.
- **Failures stop the run.** :meth:`RunDir.append_many` stores a batch (a window) and raises
  :class:`TooManyErrorsError` when every item of it errored or when the errors of this
  session reach ``max_errors``, naming the reason, so a dead server never yields exit 0.
- URLs are written without their ``user:password@`` part (config, records, metrics).

Typical use::

    with track_data_reads() as data:
        items = load_items(...)
    config = {"recipe": identity, "runtime": runtime, "data": data}
    with RunDir.create(args.output, config, overwrite=args.overwrite) as run:
        for window in progress(windows_of(pending(items, run))):
            run.append_many(solve(window))
        read = run.read_records(required={"answer": str})
        run.write_metrics(summarise(read.finished))
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from filelock import FileLock, Timeout

from chorus_shared.environment import TRACKED_PACKAGES, environment_info
from chorus_shared.progress import progress
from chorus_shared.redact import redact_urls, redact_value

__all__ = [
    "CONFIG_FILE",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "RECORDS_FILE",
    "REPORT_FILE",
    "RESUME_IGNORED_KEYS",
    "TRACKED_PACKAGES",
    "OutputFolder",
    "RecordSet",
    "RunConfigMismatch",
    "RunDir",
    "RunLockedError",
    "Skip",
    "TooManyErrorsError",
    "environment_info",  # re-exported from chorus_shared.environment for old callers
    "is_errored",
    "is_run_folder",
    "pending",
    "progress",  # re-exported from chorus_shared.progress for old callers
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
RECORDS_FILE = "records.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
# What --overwrite removes from a run folder made before manifest.json existed.
_LEGACY_RUN_FILES = (CONFIG_FILE, RECORDS_FILE, METRICS_FILE, REPORT_FILE)

# Only the environment block and the "runtime" block (knobs that change speed, not results:
# batch size, window, data folder) may change between a run and its resumption. Everything
# else (model, data fingerprint, limit, seeds, ...) changes what the records mean.
RESUME_IGNORED_KEYS: frozenset[str] = frozenset({"environment", "runtime"})


class RunConfigMismatch(ValueError):
    """The folder already holds a run made with a different config."""


class RunLockedError(RuntimeError):
    """Another process (or another RunDir in this one) is writing the run folder."""


class TooManyErrorsError(RuntimeError):
    """So many items failed that carrying on would only store more failures."""


def is_errored(record: Mapping[str, Any]) -> bool:
    """Returns True when ``record`` is an errored (not finished) item: its ``error`` is set."""
    return bool(record.get("error"))


@dataclass(frozen=True)
class Skip:
    """One record line that a reader left out, and why."""

    line: int
    reason: str


@dataclass
class RecordSet:
    """What :meth:`RunDir.read_records` found in ``records.jsonl``.

    ``finished`` holds one valid finished record per id, in file order; ``errored`` the
    latest errored record of each id that has no finished one; ``skipped`` every line left
    out, with its line number and reason; ``torn_bytes`` the size of an unterminated last line;
    ``lines`` the 1-based line number of each finished and errored record, by id (as str).
    """

    path: Path
    finished: list[dict[str, Any]] = field(default_factory=list)
    errored: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    torn_bytes: int = 0
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, record: Mapping[str, Any]) -> int:
        """Returns the line number of ``record`` (one of ``finished``/``errored``) in the file.

        A caller that rejects a record after reading (e.g. a shape check) reports this line.
        """
        return self.lines[str(record["id"])]

    def skip(self, record: Mapping[str, Any], reason: str) -> None:
        """Move ``record`` out of ``finished`` into ``skipped`` with ``reason`` and its line.

        Returns ``None``. For readers whose own checks reject a record the generic ones kept.
        """
        self.finished = [r for r in self.finished if r is not record]
        self.skipped.append(Skip(self.line_of(record), reason))
        self.skipped.sort(key=lambda s: s.line)

    def notes(self) -> list[str]:
        """Returns one human-readable line per problem found (empty when the file is clean)."""
        notes = [f"{self.path}:{s.line}: skipped: {s.reason}" for s in self.skipped]
        if self.torn_bytes:
            notes.append(
                f"{self.path}: ignored an unterminated last line ({self.torn_bytes} bytes) "
                "left by an interrupted write"
            )
        if self.errored:
            notes.append(
                f"{self.path}: {len(self.errored)} item(s) errored and are not finished "
                f"(first: {self.errored[0]['id']!r}: {self.errored[0]['error']}); "
                "run the same generate command again to retry them"
            )
        return notes


class RunDir:
    """One experiment's output folder; see the module docstring for the contract.

    Build it with :meth:`create` (new run or resumption; takes the writer lock) or
    :meth:`open` (read an existing run; the lock is taken at the first append). The lock
    is released by :meth:`close` or at the end of a ``with`` block; a ``with`` block that
    raises before anything was appended to a run it started removes that run again
    (:meth:`discard_if_empty`).
    """

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        # Private: use RunDir.create or RunDir.open, which check the folder first.
        self._path = path
        self._config = config
        self._lock: FileLock | None = None
        self._writer: IO[bytes] | None = None
        self._ids: set[str] | None = None
        self._new = False  # this object started the run (so discard_if_empty may remove it)
        self._made_dirs: list[Path] = []
        self._discarded = False
        self._appended = 0
        self._max_errors: int | None = None
        self._session_errors = 0

    # -- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        config: dict[str, Any],
        *,
        overwrite: bool = False,
        max_errors: int | None = None,
    ) -> RunDir:
        """Start a run in ``path``, or resume the one already there; take the writer lock.

        The lock is taken before any file is read or changed, so a second writer (also one
        with ``overwrite=True``) gets :class:`RunLockedError` and changes nothing. A new run
        writes ``config.json`` (``config`` plus an ``environment`` block). When the folder
        already holds a run, its stored config must equal ``config`` (ignoring
        :data:`RESUME_IGNORED_KEYS`), otherwise :class:`RunConfigMismatch` is raised;
        ``overwrite=True`` instead deletes the files the old run wrote (its manifest).
        ``max_errors`` caps the errored items :meth:`append_many` accepts in this session.

        Returns the :class:`RunDir`, holding the lock until :meth:`close`.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"run folder {path} exists and is not a directory")
        if max_errors is not None and max_errors < 1:
            raise ValueError(f"max_errors must be >= 1, got {max_errors}")
        # "environment" is ours: drop a stale copy (e.g. from ``RunDir.open(...).config``).
        wanted = _jsonable({k: v for k, v in config.items() if k != "environment"}, what="config")

        made = _make_dirs(path)
        run = cls(path, {})
        run._made_dirs = made
        run._max_errors = max_errors
        run._take_lock()
        try:
            config_file = path / CONFIG_FILE
            if overwrite:
                _check_overwritable(path)
                _remove_run_files(path)
            elif config_file.exists():
                stored = _read_json(config_file)
                differences = _config_differences(stored, wanted)
                if differences:
                    raise RunConfigMismatch(_mismatch_message(path, differences))
                logger.info("resuming run in %s", path)
                run._config = stored
                return run
            elif (path / RECORDS_FILE).exists():
                # Records without a config cannot be checked against the new config.
                raise RunConfigMismatch(
                    f"{path} holds {RECORDS_FILE} but no {CONFIG_FILE}, so it cannot be "
                    "resumed safely; pass a new output folder or --overwrite"
                )
            stored = {**wanted, "environment": environment_info()}
            run._register(CONFIG_FILE, RECORDS_FILE)
            _atomic_write_text(config_file, _dump_json(stored))
            run._config = stored
            run._new = True
        except BaseException:
            run.close()
            raise
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Open an existing run for reading (and further appends).

        Returns the :class:`RunDir`; raises ``FileNotFoundError`` when ``path`` is missing or
        has no ``config.json`` and ``NotADirectoryError`` when it is a file.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(
                f"{path} is a file, not a run folder: pass the folder that holds {CONFIG_FILE} "
                f"and {RECORDS_FILE}"
            )
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

    def config_value(self, dotted: str, kind: type | tuple[type, ...] = object) -> Any:
        """Returns the stored config value at ``dotted`` (e.g. ``"recipe.task"``).

        Raises ``ValueError`` naming ``config.json`` and the key when it is missing or not of
        type ``kind``, so a damaged config gives one clear error instead of a ``KeyError``.
        """
        value: Any = self._config
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                raise ValueError(
                    f"{self._path / CONFIG_FILE} has no {dotted!r}: it was not written by a "
                    "chorus run or was edited; regenerate the run"
                )
            value = value[part]
        if not isinstance(value, kind):
            raise ValueError(
                f"{self._path / CONFIG_FILE}: {dotted!r} should be {_kind_name(kind)}, "
                f"found {type(value).__name__} {value!r:.80}"
            )
        return value

    @property
    def records_path(self) -> Path:
        """Returns the path of ``records.jsonl`` (which may not exist yet)."""
        return self._path / RECORDS_FILE

    # -- records ------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Returns every complete record line (finished or errored) in file order.

        An unterminated last line is ignored; a malformed complete line raises ``ValueError``
        naming the file and line number. Readers that score a run should prefer
        :meth:`read_records`, which validates and never double-counts.
        """
        records, _ = _read_records(self.records_path)
        return records

    def read_records(
        self,
        *,
        required: Mapping[str, type | tuple[type, ...]] | None = None,
        match: Mapping[str, Any] | None = None,
        ids: Collection[str] | None = None,
    ) -> RecordSet:
        """Returns the validated contents of ``records.jsonl`` as a :class:`RecordSet`.

        A line is skipped (and counted, with its line number and reason) when it is not a
        JSON object, its ``id`` is missing or not a str/int, its id is not in ``ids`` (when
        given), a key of ``match`` has another value (a record of another task), a finished
        record lacks a key of ``required`` or holds a value of the wrong type, or its id is
        already finished earlier in the file. Never raises on the file's contents.
        """
        result = RecordSet(self.records_path)
        try:
            data = self.records_path.read_bytes()
        except FileNotFoundError:
            return result
        valid_bytes = data.rfind(b"\n") + 1
        result.torn_bytes = len(data) - valid_bytes
        allowed = None if ids is None else {str(i) for i in ids}
        finished: dict[str, dict[str, Any]] = {}
        errored: dict[str, dict[str, Any]] = {}
        for lineno, raw in enumerate(data[:valid_bytes].split(b"\n")[:-1], start=1):
            if not raw.strip():
                continue
            reason, record = _check_line(raw, required or {}, match or {}, allowed)
            if reason is None and record is not None:
                key = str(record["id"])
                if not is_errored(record):
                    if key in finished:
                        reason = f"duplicate id {record['id']!r} (already finished earlier)"
                    else:
                        finished[key] = record
                        errored.pop(key, None)
                        result.lines[key] = lineno
                elif key not in finished:
                    errored[key] = record
                    result.lines[key] = lineno
            if reason is not None:
                result.skipped.append(Skip(lineno, reason))
        result.finished = list(finished.values())
        result.errored = list(errored.values())
        return result

    def finished_ids(self) -> set[str]:
        """Returns the ids of the finished (not errored) records, as strings."""
        if self._ids is not None:
            return set(self._ids)
        return {_id_key(r["id"]) for r in self.records() if not is_errored(r)}

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (finished, or errored with its reason) and force it to disk.

        The record needs an ``id`` (str or int) with no finished record yet; an errored
        record may be followed by a retry of the same id. Returns ``None``.
        """
        if "id" not in record:
            raise ValueError(f"record has no 'id' key (keys: {sorted(record)})")
        key = _id_key(record["id"])
        # Serialise before touching the file so a bad record cannot leave half a line.
        line = (_dump_line(redact_value(record)) + "\n").encode("utf-8")
        writer, ids = self._open_writer()
        if key in ids:
            raise ValueError(
                f"record id {record['id']!r} is already finished in {self.records_path}"
            )
        writer.write(line)
        writer.flush()
        os.fsync(writer.fileno())
        self._appended += 1
        if is_errored(record):
            self._session_errors += 1
        else:
            ids.add(key)

    def append_many(self, records: Sequence[dict[str, Any]]) -> None:
        """Append a batch (one window) of records, then apply the error policy.

        Raises :class:`TooManyErrorsError` (after storing the whole batch) when every record
        of a non-empty batch errored, or when the errored records appended by this object
        reach ``max_errors``; the message names the first reason (the backend puts the
        server in it). Returns ``None``.
        """
        for record in records:
            self.append(record)
        failed = [r for r in records if is_errored(r)]
        if not failed:
            return
        whole_batch = len(failed) == len(records)
        over_cap = self._max_errors is not None and self._session_errors >= self._max_errors
        if whole_batch or over_cap:
            why = (
                f"all {len(records)} items of a window failed"
                if whole_batch
                else f"{self._session_errors} items failed (limit {self._max_errors})"
            )
            raise TooManyErrorsError(
                f"stopping the run in {self._path}: {why}; first reason: {failed[0]['error']}. "
                "The failed items are stored with their reason and are retried when the same "
                "command runs again; fix the cause first."
            )

    def discard_if_empty(self) -> bool:
        """Remove a run this object started when nothing was appended (e.g. a model failed
        to load), leaving the path as it was before :meth:`create`.

        Returns True when the run was removed (also on a second call after a removal). The
        run is kept (and False returned) when it was resumed, has records appended, or its
        folder holds anything besides the run's own files (those in its manifest, the
        manifest and the lock): a checkpoint, a subfolder or a user's file means somebody
        wrote there, so nothing is deleted. The lock is released in every case.
        """
        if self._discarded:
            return True
        self.close()
        if not self._new or self._appended or not self._holds_only_own_files():
            return False
        for name in [*self._manifest(), MANIFEST_FILE, LOCK_FILE]:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                (self._path / name).unlink()
        for folder in reversed(self._made_dirs):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: never removes what someone else put there
        self._discarded = True
        return True

    def _holds_only_own_files(self) -> bool:
        """Returns True when every entry of the folder is a plain file this run owns."""
        own = {*self._manifest(), MANIFEST_FILE, LOCK_FILE}
        try:
            entries = list(self._path.iterdir())
        except OSError:
            return False
        return all(entry.name in own and entry.is_file() for entry in entries)

    def close(self) -> None:
        """Close the records file and release the writer lock. Returns ``None``."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._ids = None
        if self._lock is not None:
            self._lock.release(force=True)
            self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            # A block that failed before storing anything (a model that cannot load, bad
            # data) leaves no new, empty run behind to trip a later resume.
            self.discard_if_empty()
        self.close()

    def _take_lock(self) -> None:
        if self._lock is not None:
            return
        # filelock: flock on POSIX, msvcrt on Windows; each FileLock object holds its own
        # descriptor, so a second RunDir in this process is refused like another process.
        # Not thread-local: Ray's driver may append from another thread than the one that
        # created the run.
        lock = FileLock(str(self._path / LOCK_FILE), timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise RunLockedError(
                f"{self._path} is being written by another process (or another RunDir in this "
                "one); wait for it to finish or choose another output folder"
            ) from None
        self._lock = lock

    def _open_writer(self) -> tuple[IO[bytes], set[str]]:
        if self._writer is not None and self._ids is not None:
            return self._writer, self._ids
        self._take_lock()
        self._register(RECORDS_FILE)
        writer = open(self.records_path, "ab")  # noqa: SIM115 - kept open across appends
        try:
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
            ids = {_id_key(r["id"]) for r in records if not is_errored(r)}
        except BaseException:
            writer.close()
            raise
        self._writer, self._ids = writer, ids
        return writer, ids

    # -- manifest -----------------------------------------------------------------------

    def _manifest(self) -> list[str]:
        file = self._path / MANIFEST_FILE
        if not file.is_file():
            return []
        with contextlib.suppress(ValueError, OSError):
            names = json.loads(file.read_text(encoding="utf-8")).get("files", [])
            return [n for n in names if isinstance(n, str) and Path(n).name == n]
        return []

    def _register(self, *names: str) -> None:
        # Written before the files themselves, so a kill in between never leaves an
        # unlisted file that --overwrite would miss.
        known = self._manifest()
        new = [n for n in names if n not in known]
        if new:
            _atomic_write_text(self._path / MANIFEST_FILE, _dump_json({"files": [*known, *new]}))

    # -- metrics, report, figures -------------------------------------------------------

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        """Write ``metrics.json`` atomically. Returns its path."""
        target = self._path / METRICS_FILE
        text = _dump_json(_jsonable(metrics, what="metrics"))
        self._register(METRICS_FILE)
        _atomic_write_text(target, text)
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
        self._register(REPORT_FILE)
        markdown = redact_urls(markdown)
        _atomic_write_text(target, markdown if markdown.endswith("\n") else markdown + "\n")
        return target

    def figure_path(self, name: str) -> Path:
        """Returns the path for plot ``name`` in the run folder (``.png`` added if no suffix).

        The name is added to the manifest, so ``--overwrite`` removes the plot later.
        """
        if not name or Path(name).name != name or name in {".", ".."}:
            raise ValueError(f"figure name must be a plain file name, got {name!r}")
        if not Path(name).suffix:
            name += ".png"
        self._register(name)
        return self._path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self._path)!r})"


class OutputFolder:
    """A plain folder that receives a run's derived files (``metrics.json``, ``report.md``,
    plots) instead of the run folder, e.g. ``evaluate --out DIR`` on a read-only run.

    It has the writing methods of :class:`RunDir` (``write_metrics``, ``write_report``,
    ``figure_path``, ``path``), so report code takes either. No lock and no manifest: the
    folder is not a run and nothing in it is ever deleted by Chorus.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"output folder {path} exists and is not a directory")
        if is_run_folder(path):
            # Its metrics.json/report.md belong to that run: writing ours there would replace
            # another run's scores with these.
            raise ValueError(
                f"{path} holds a Chorus run ({MANIFEST_FILE} or a Chorus {CONFIG_FILE}): "
                "--out must be a plain folder, not a run; to score that run, evaluate it "
                "without --out"
            )
        path.mkdir(parents=True, exist_ok=True)
        self._path = path

    @property
    def path(self) -> Path:
        """Returns the folder."""
        return self._path

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        """Write ``metrics.json`` atomically. Returns its path."""
        target = self._path / METRICS_FILE
        _atomic_write_text(target, _dump_json(_jsonable(metrics, what="metrics")))
        return target

    def write_report(self, markdown: str) -> Path:
        """Write ``report.md`` atomically (trailing newline added if missing). Returns its path."""
        target = self._path / REPORT_FILE
        markdown = redact_urls(markdown)
        _atomic_write_text(target, markdown if markdown.endswith("\n") else markdown + "\n")
        return target

    def figure_path(self, name: str) -> Path:
        """Returns the path for plot ``name`` in the folder (``.png`` added if no suffix)."""
        if not name or Path(name).name != name or name in {".", ".."}:
            raise ValueError(f"figure name must be a plain file name, got {name!r}")
        return self._path / (name if Path(name).suffix else name + ".png")

    def __repr__(self) -> str:
        return f"OutputFolder({str(self._path)!r})"


def pending(items: Sequence[dict[str, Any]], run: RunDir) -> list[dict[str, Any]]:
    """Returns the items with no finished record in ``run`` (errored ones included), in order."""
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


# -- helpers ------------------------------------------------------------------------------


def _id_key(value: Any) -> str:
    # Data loaders may give int or str ids; comparing as strings keeps resume working
    # whichever the loader used.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"record id must be a str or int, got {type(value).__name__}: {value!r}")
    return str(value)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int to isinstance; a count or score field holding true is still wrong.
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False
    return isinstance(value, kinds)


def _check_line(
    raw: bytes,
    required: Mapping[str, type | tuple[type, ...]],
    match: Mapping[str, Any],
    allowed: set[str] | None,
) -> tuple[str | None, dict[str, Any] | None]:
    """Returns ``(reason, None)`` for a line to skip, ``(None, record)`` for a valid one."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"not a JSON line ({err})", None
    if not isinstance(record, dict):
        return f"a record must be a JSON object, found {type(record).__name__}", None
    if "id" not in record:
        return "record has no 'id'", None
    value = record["id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return f"record id must be a str or int, found {type(value).__name__}", None
    for key, expected in match.items():
        if record.get(key) != expected:
            return (
                f"record {value!r} has {key}={record.get(key)!r}, but this run's {key} is "
                f"{expected!r}",
                None,
            )
    if allowed is not None and str(value) not in allowed:
        return f"id {value!r} is not an item of this run", None
    if is_errored(record):
        if not isinstance(record["error"], str):
            return f"record {value!r}: 'error' should be a string reason", None
        return None, record
    for key, kind in required.items():
        if key not in record:
            return f"record {value!r} has no {key!r}", None
        if not _is_kind(record[key], kind):
            return (
                f"record {value!r}: {key!r} should be {_kind_name(kind)}, "
                f"found {type(record[key]).__name__}",
                None,
            )
    return None, record


def _json_default(value: Any) -> Any:
    # Paths are the one non-JSON type configs routinely carry (output and data folders).
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON: {value!r}")


def _jsonable(data: dict[str, Any], *, what: str) -> dict[str, Any]:
    # Round-trip through JSON so an in-memory config compares equal to its stored copy
    # (tuples become lists, Paths become strings), and strip credentials from URLs.
    try:
        return redact_value(json.loads(json.dumps(data, default=_json_default)))
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
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
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


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; returns the folders created, outermost first."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    path.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


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


def _is_chorus_config(file: Path) -> bool:
    # RunDir.create always stores an "environment" block beside the caller's config.
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("environment"), dict)


def is_run_folder(path: str | Path) -> bool:
    """Returns True when ``path`` holds a Chorus run: a ``manifest.json``, or a
    ``config.json`` written by :meth:`RunDir.create` (it has an ``environment`` block)."""
    path = Path(path)
    return (path / MANIFEST_FILE).is_file() or _is_chorus_config(path / CONFIG_FILE)


def _check_overwritable(path: Path) -> None:
    # --overwrite deletes by name; in a folder that is not a Chorus run those names are the
    # user's own files (their config.json, records.jsonl, report.md): refuse, delete nothing.
    if is_run_folder(path):
        return
    theirs = [name for name in _LEGACY_RUN_FILES if (path / name).exists()]
    if theirs:
        raise RunConfigMismatch(
            f"{path} is not a Chorus run (no {MANIFEST_FILE}, and its {CONFIG_FILE} was not "
            f"written by Chorus) but holds {', '.join(theirs)}: --overwrite deletes only a "
            "Chorus run's files, so nothing was deleted; choose another output folder"
        )


def _remove_run_files(path: Path) -> None:
    # Only files this run wrote (its manifest) are removed: the folder may hold a user's own
    # files, plots included. Runs from before manifests get the four standard names.
    manifest = path / MANIFEST_FILE
    names: list[str] = list(_LEGACY_RUN_FILES)
    if manifest.is_file():
        with contextlib.suppress(ValueError, OSError, AttributeError):
            listed = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
            names = [n for n in listed if isinstance(n, str) and Path(n).name == n]
    for name in [*names, MANIFEST_FILE]:
        child = path / name
        if child.is_file() and name != LOCK_FILE:
            child.unlink()
    for child in path.glob(".*.tmp"):  # leftovers of an interrupted atomic write
        if child.is_file():
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
        "Resuming would mix records from both configs (or two datasets). Pass a new output "
        "folder, or --overwrite to delete the old run."
    )
    return "\n".join(lines)
