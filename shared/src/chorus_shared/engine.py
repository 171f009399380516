"""The one run engine: items in windows -> typed records in a run folder, for every package.

Every package's long step (debate's rounds, blender's candidates/ranking/fusion, tripost's
attempt collection and evaluation, selfee's chains, alpha_umi's static and real-time
evaluation) is "turn a window of items into one record per item", and everything around that
is the same: the item set and the data fingerprint go into ``config.json``, the writer lock is
taken before any compute, finished ids are skipped on resume, errored items are stored with
their reason and retried, a window that failed whole stops the run (exit non-zero), windows
fan out over Ray actors with ``--ray``, a run that never produced a record leaves nothing.
A package supplies only ``build_worker``: a picklable zero-argument callable that loads its
models once and returns the function turning a window into record dicts.

Typical use::

    with track_data_reads() as data:
        items = load_items(...)                                   # bad input fails here
    run = run_items(out, {"recipe": ..., "runtime": ...}, items, WorkerFactory(recipe),
                    window=recipe.window, desc="rank", data=data, ray=ray_options)
    read = read_run(run, match={"task": "rank"})                  # evaluate: the run's own ids
    for note in read.notes(): print(note)

Readers go through :func:`read_run`: it takes only records whose id is one of the run's
``item_ids``, counts and explains every skipped line, and says "k of n items" when the run is
incomplete (:meth:`RunRead.coverage_note`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chorus_shared.distributed import ray_map_windows
from chorus_shared.models.base import Completion
from chorus_shared.progress import progress
from chorus_shared.runs import CONFIG_FILE, RecordSet, RunDir, pending

__all__ = [
    "RayOptions",
    "RunRead",
    "WindowFn",
    "check_item_ids",
    "errored_record",
    "first_error",
    "read_run",
    "run_item_ids",
    "run_items",
    "run_windows",
    "start_run",
]

Record = dict[str, Any]
WindowFn = Callable[[list[Record]], list[Record]]


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to fan out with ``--ray`` (``address="auto"``: an existing cluster)."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0


def check_item_ids(items: Sequence[Mapping[str, Any]], *, what: str = "input") -> list[str]:
    """Returns the items' ids as strings; raises ``ValueError`` naming the first item without
    an id and the first duplicated id (a duplicate would make half a run on resume)."""
    ids: list[str] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        value = item.get("id")
        # bool is an int to isinstance, but True is no id (and RunDir refuses it later).
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise ValueError(f"{what}: item {position} has no usable 'id' (str or int)")
        key = str(item["id"])
        if key in seen:
            raise ValueError(
                f"{what}: id {key!r} occurs more than once; every item needs its own id"
            )
        seen.add(key)
        ids.append(key)
    return ids


def start_run(
    out: str | Path,
    config: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    *,
    data: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    max_errors: int | None = None,
) -> RunDir:
    """Create (or resume) the run folder for ``items``; returns the :class:`RunDir`, locked.

    ``config`` is the package's identity (``recipe``, ``task``, ``runtime``, ...); the engine
    adds ``item_ids`` (what readers accept) and ``data`` (the fingerprint of every input file,
    so a resume on changed inputs is refused). Raises ``ValueError`` on an empty item list or
    duplicate ids, before anything is written.
    """
    if not items:
        raise ValueError("no items to run: the input is empty (check --limit and the data)")
    ids = check_item_ids(items)
    full = {**config, "item_ids": ids}
    if data is not None:
        full["data"] = dict(data)
    return RunDir.create(out, full, overwrite=overwrite, max_errors=max_errors)


def run_windows(
    run: RunDir,
    items: Sequence[Record],
    build_worker: Callable[[], WindowFn],
    *,
    window: int,
    desc: str,
    ray: RayOptions | None = None,
) -> int:
    """Process the items of ``run`` that are not finished yet, a window at a time; returns the
    number of windows run.

    Local: ``build_worker()`` once, then each window's records are appended (fsynced) as it
    finishes. With ``ray``: one worker per Ray actor, windows streamed back into this run. A
    window whose records all errored raises :class:`~chorus_shared.runs.TooManyErrorsError`
    after storing them. Any exception before the first record removes a run this call's
    ``RunDir`` started (nothing is left behind for a model that cannot load). The lock is
    released on return.
    """
    try:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        _check_run_items(run, items)
        todo = pending(list(items), run)
        print(
            f"{run.path}: {len(items) - len(todo)} of {len(items)} items already done",
            file=sys.stderr,
        )
        windows = [todo[k : k + window] for k in range(0, len(todo), window)]
        with run:
            if windows and ray is not None:
                return ray_map_windows(
                    _CheckedWorker(build_worker),
                    windows,
                    run.append_many,
                    num_workers=ray.workers,
                    gpus_per_worker=ray.gpus_per_worker,
                    address=ray.address,
                )
            if windows:
                run_window = _CheckedWorker(build_worker)()
                for chunk in progress(windows, total=len(windows), desc=desc):
                    run.append_many(run_window(chunk))
            return len(windows)
    except BaseException:
        run.discard_if_empty()
        raise


def run_items(
    out: str | Path,
    config: Mapping[str, Any],
    items: Sequence[Record],
    build_worker: Callable[[], WindowFn],
    *,
    window: int,
    desc: str,
    data: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    ray: RayOptions | None = None,
    max_errors: int | None = None,
) -> RunDir:
    """:func:`start_run` then :func:`run_windows`; returns the (closed) :class:`RunDir`."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    run = start_run(out, config, items, data=data, overwrite=overwrite, max_errors=max_errors)
    run_windows(run, items, build_worker, window=window, desc=desc, ray=ray)
    return run


def _check_run_items(run: RunDir, items: Sequence[Record]) -> None:
    # Records of items outside the run's item_ids would be written but never read (readers
    # take only the run's own ids): a caller passing other items is a bug, refused up front.
    known = run_item_ids(run)
    if known is None:
        return
    allowed = set(known)
    strangers = [str(item.get("id")) for item in items if str(item.get("id")) not in allowed]
    if strangers:
        raise ValueError(
            f"{len(strangers)} item(s) are not items of this run ({strangers[:5]}): "
            f"{run.path / CONFIG_FILE} lists the items the run was started for"
        )


@dataclass(frozen=True)
class _CheckedWorker:
    """Wraps a package's worker factory so every window's records are checked where they are
    made (locally or inside a Ray actor) before the driver stores them; picklable."""

    build_worker: Callable[[], WindowFn]

    def __call__(self) -> WindowFn:
        run_window = self.build_worker()

        def checked(chunk: list[Record]) -> list[Record]:
            records = run_window(chunk)
            _check_window(chunk, records)
            return records

        return checked


def _check_window(chunk: Sequence[Record], records: Sequence[Record]) -> None:
    # A worker that drops or invents items would make a run that never completes (or mixes
    # items): refuse it at once, naming the ids.
    wanted = [str(item["id"]) for item in chunk]
    got = [str(record.get("id")) for record in records]
    if sorted(wanted) != sorted(got):
        raise RuntimeError(
            f"the window function returned records for {got[:5]} but was given {wanted[:5]}: "
            "it must return exactly one record per item"
        )


def first_error(completions: Sequence[Completion]) -> str | None:
    """Returns the first error reason among ``completions`` (None when every reply came back).

    A package's window function stores an item whose reply failed as an errored record
    (:func:`errored_record`), never as an answer.
    """
    for completion in completions:
        if completion.error or completion.finish_reason == "error":
            return completion.error or "the backend reported an error without a reason"
    return None


def errored_record(item_id: str | int, reason: str, **fields: Any) -> Record:
    """Returns the record of an item that failed: its id, the reason and any context fields.

    The run stores it, readers count it as errored (never graded), and a resume retries it.
    """
    if not reason:
        raise ValueError("an errored record needs a reason")
    return {"id": item_id, **fields, "error": reason}


@dataclass
class RunRead:
    """What a reader found in a run: the validated records plus the run's item set."""

    records: RecordSet
    expected: int | None  # the number of items the run was made for (None: an old run)
    path: Path

    @property
    def finished(self) -> list[Record]:
        """Returns the finished records (one per id, the run's own ids only)."""
        return self.records.finished

    @property
    def complete(self) -> bool:
        """Returns True when every item of the run has a finished record."""
        return self.expected is None or len(self.records.finished) >= self.expected

    def coverage(self) -> str:
        """Returns "k of n items" (or "k items" for a run that did not store its item set)."""
        k = len(self.records.finished)
        return f"{k} items" if self.expected is None else f"{k} of {self.expected} items"

    def coverage_note(self) -> str | None:
        """Returns the warning for an incomplete run (None when complete)."""
        if self.complete:
            return None
        assert self.expected is not None
        missing = self.expected - len(self.records.finished)
        return (
            f"{self.path}: only {self.coverage()} are finished ({missing} missing or errored): "
            "the scores cover those alone; run the same generate command again to finish it"
        )

    def notes(self) -> list[str]:
        """Returns every skip/torn/errored note of the reader plus the coverage warning."""
        notes = self.records.notes()
        if self.expected is None:
            notes.append(
                f"{self.path / CONFIG_FILE} lists no item_ids (a run made before they were "
                "recorded): records were not checked against the run's item set"
            )
        note = self.coverage_note()
        if note:
            notes.append(note)
        return notes


def run_item_ids(run: RunDir) -> list[str] | None:
    """Returns the ids of the items ``run`` was made for (``item_ids`` in config.json), or
    None for a run made before they were stored; a damaged value is one ``ValueError``."""
    if "item_ids" not in run.config:
        return None
    ids = run.config_value("item_ids", list)
    if not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{run.path / CONFIG_FILE}: 'item_ids' should be a list of strings")
    return ids


def read_run(
    run: RunDir,
    *,
    required: Mapping[str, type | tuple[type, ...]] | None = None,
    match: Mapping[str, Any] | None = None,
    ids: Collection[str] | None = None,
) -> RunRead:
    """Returns the run's records read through the one validated path (:class:`RunRead`).

    Only records whose id is one of the run's ``item_ids`` (or ``ids`` when given) count; a
    duplicated id counts once; every skipped line is counted with its reason.
    """
    wanted = run_item_ids(run) if ids is None else list(ids)
    read = run.read_records(required=required, match=match, ids=wanted)
    return RunRead(read, None if wanted is None else len(wanted), run.path)
