"""Evaluation data as plain dict records, found locally first and on the hub last.

``load_dataset_records(name, split)`` looks, in order, at

1. an explicit ``path`` (a data root holding ``<name>/``, the ``<name>/`` folder itself, or
   one data file),
2. ``$CHORUS_DATA_DIR``,
3. the sibling folder ``../shared/data`` of the repository (and of the working directory),
4. the Hugging Face hub through ``datasets.load_dataset``, when the dataset has a hub copy.

Datasets are registered with ``register_dataset`` so that a paper package can add its own
without touching this module. A reader raises FileNotFoundError when its files are not under a
root (the search moves on) and ValueError when they are there but malformed (the search stops:
broken data must be loud, never silently replaced by another copy).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chorus_shared.grading import gsm_ground_truth

__all__ = [
    "DATA_DIR_ENV",
    "DataNotFoundError",
    "HubSource",
    "list_datasets",
    "load_dataset_records",
    "read_data_text",
    "register_dataset",
    "track_data_reads",
]

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "CHORUS_DATA_DIR"

Reader = Callable[[Path, str], list[dict]]
HubConverter = Callable[[Iterable[Mapping[str, Any]], str], list[dict]]

# shared/src/chorus_shared/data.py -> parents[3] is the repository root; the evaluation data
# lives next to the repository, not inside it. Tests point this elsewhere.
try:
    _REPO_ROOT: Path | None = Path(__file__).resolve().parents[3]
except IndexError:  # installed somewhere shallow: there is no sibling folder to find
    _REPO_ROOT = None


class DataNotFoundError(FileNotFoundError):
    """No copy of a dataset was found in any of the places searched."""


# The fingerprint being collected by track_data_reads(), if any (a ContextVar so threads and
# nested loads do not mix theirs).
_READS: ContextVar[dict[str, str] | None] = ContextVar("chorus_data_reads", default=None)


@contextlib.contextmanager
def track_data_reads() -> Iterator[dict[str, str]]:
    """Collect a fingerprint of every data file read inside the ``with`` block.

    Yields a dict, filled as files are read, mapping each file (relative to the data root it
    was found under, so the same data in another folder gives the same fingerprint) to
    ``"sha256:<hex>:<bytes>"``; a hub load adds ``"hub:<path>/<config>/<split>"`` with its row
    count. Store it in a run's config so a resume on different data is refused.
    """
    reads: dict[str, str] = {}
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


def _read_data_bytes(file: Path, root: Path) -> bytes:
    """Returns the bytes of a data file, noting its fingerprint when one is being tracked."""
    data = file.read_bytes()
    reads = _READS.get()
    if reads is not None:
        try:
            name = file.relative_to(root).as_posix() if root.is_dir() else file.name
        except ValueError:
            name = file.name
        reads[name] = f"sha256:{hashlib.sha256(data).hexdigest()}:{len(data)}"
    return data


def read_data_text(file: Path, root: Path, encoding: str = "utf-8") -> str:
    """Returns the text of a data file a registered reader opens under ``root``, noting its
    fingerprint for :func:`track_data_reads` (so packages' own readers are fingerprinted as
    the built-in ones are); a non-UTF-8 byte is a ValueError naming the file and line."""
    return _decode(_read_data_bytes(file, root), file, encoding)


def _decode(data: bytes, file: Path, encoding: str = "utf-8") -> str:
    """Returns ``data`` as text; a non-UTF-8 byte is a ValueError naming the file and line."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{file}, line {line}: not valid UTF-8 (byte {data[err.start]:#04x} at offset "
            f"{err.start}); re-save the file as UTF-8"
        ) from None


@dataclass(frozen=True)
class HubSource:
    """Where a dataset lives on the Hugging Face hub and how to turn its rows into records.

    ``convert(rows, split)`` receives the rows of one hub split and returns records shaped
    exactly like the local reader's. ``splits`` maps our split names to the hub's where they
    differ (for example ``{"val": "validation"}``).
    """

    path: str
    config: str | None
    convert: HubConverter
    splits: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """Return ``"path (config)"`` for messages."""
        return f"{self.path} ({self.config})" if self.config else self.path


@dataclass(frozen=True)
class _Dataset:
    name: str
    reader: Reader
    hub: HubSource | None
    splits: tuple[str, ...] | None


_REGISTRY: dict[str, _Dataset] = {}


def register_dataset(
    name: str,
    reader: Reader,
    hub: HubSource | tuple | None = None,
    *,
    splits: Iterable[str] | None = None,
    replace: bool = False,
) -> None:
    """Register a dataset under ``name``; returns None.

    ``reader(root, split)`` reads the local layout under a data root (``root / name / ...``), or
    the single file ``root`` when it is given one, and returns the records. ``hub`` is a
    ``HubSource`` or a tuple ``(hf_path, hf_config, convert_fn[, split_map])``. ``splits`` lists
    the valid split names, checked before any lookup. Registering a name twice raises
    ValueError unless ``replace=True`` or it is the same reader again (a re-import).
    """
    if isinstance(hub, tuple):
        hub = HubSource(*hub)
    old = _REGISTRY.get(name)
    same_reader = old is not None and (
        getattr(old.reader, "__module__", None),
        getattr(old.reader, "__qualname__", None),
    ) == (getattr(reader, "__module__", None), getattr(reader, "__qualname__", None))
    if old is not None and not (replace or same_reader):
        raise ValueError(
            f"dataset {name!r} is already registered (reader {old.reader!r}); "
            "pass replace=True to override it"
        )
    _REGISTRY[name] = _Dataset(name, reader, hub, tuple(splits) if splits is not None else None)


def list_datasets() -> list[str]:
    """Return the registered dataset names, sorted."""
    return sorted(_REGISTRY)


def _sibling_roots() -> list[Path]:
    candidates = []
    if _REPO_ROOT is not None:
        candidates.append(_REPO_ROOT.parent / "shared" / "data")
    candidates.append(Path.cwd().resolve().parent / "shared" / "data")
    unique: list[Path] = []
    for c in candidates:
        if c not in unique:
            unique.append(c)
    return unique


def _reason(err: BaseException) -> str:
    # First line only: hub errors can carry whole tracebacks of retries.
    return (str(err).strip() or type(err).__name__).splitlines()[0]


def _check_records(name: str, records: list[dict], where: str) -> list[dict]:
    seen: set[Any] = set()
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "id" not in record:
            raise ValueError(f"{name} record {i} from {where} has no 'id': {record!r:.200}")
        if record["id"] in seen:
            raise ValueError(f"{name} record id {record['id']!r} from {where} is not unique")
        seen.add(record["id"])
    return records


def _read_local(ds: _Dataset, root: Path, split: str) -> list[dict]:
    # Accept the dataset's own folder ("data/gsm8k") as well as the data root ("data").
    if root.is_dir() and not (root / ds.name).exists() and root.name == ds.name:
        root = root.parent
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    return ds.reader(root, split)


def _read_hub(ds: _Dataset, split: str) -> list[dict]:
    assert ds.hub is not None
    import datasets  # lazily: importing it costs a second and most runs never reach the hub

    hub_split = ds.hub.splits.get(split, split)
    rows = datasets.load_dataset(ds.hub.path, ds.hub.config, split=hub_split)
    records = ds.hub.convert(rows, split)
    reads = _READS.get()
    if reads is not None:
        reads[f"hub:{ds.hub.path}/{ds.hub.config}/{hub_split}"] = f"rows:{len(records)}"
    return records


def load_dataset_records(
    name: str, split: str = "test", path: str | Path | None = None
) -> list[dict]:
    """Return the records (plain dicts, each with a stable ``id``) of one split of a dataset.

    Looks at ``path``, then ``$CHORUS_DATA_DIR``, then the sibling ``../shared/data`` folder,
    then the Hugging Face hub. Raises KeyError for an unknown dataset, ValueError for an
    unknown split or malformed files, and DataNotFoundError listing every place tried (with
    why it failed) when no copy is found.
    """
    ds = _REGISTRY.get(name)
    if ds is None:
        raise KeyError(f"unknown dataset {name!r}; registered datasets: {list_datasets()}")
    if ds.splits is not None and split not in ds.splits:
        raise ValueError(f"unknown split {split!r} for {name}; choose from {list(ds.splits)}")

    places: list[tuple[str, Path | None]] = [("explicit path", Path(path) if path else None)]
    env = os.environ.get(DATA_DIR_ENV)
    places.append((f"${DATA_DIR_ENV}", Path(env) if env else None))
    places.extend(("sibling folder", root) for root in _sibling_roots())

    tried: list[str] = []
    for label, root in places:
        if root is None:
            tried.append(f"{label}: not set")
            continue
        root = root.expanduser()
        try:
            records = _read_local(ds, root, split)
        except FileNotFoundError as err:
            if label != "sibling folder":
                # A folder the user named must hold the data: silently reading another copy
                # would give results for data they did not ask for.
                flag = "--data-dir (path=...)" if label == "explicit path" else label
                raise DataNotFoundError(
                    f"{flag} is {root}, but dataset {name!r} (split {split!r}) is not there: "
                    f"{_reason(err)}. Point it at the data folder that holds {name}/ (for "
                    f"example /path/to/shared/data), or leave it unset to search the default "
                    "places."
                ) from None
            tried.append(f"{label} {root}: {_reason(err)}")
            continue
        logger.info("loaded %d %s/%s records from %s", len(records), name, split, root)
        return _check_records(name, records, str(root))

    if ds.hub is None:
        tried.append("Hugging Face hub: this dataset has no hub copy")
    else:
        try:
            records = _read_hub(ds, split)
        except Exception as err:  # any failure here is just one more place that did not work
            tried.append(
                f"Hugging Face hub {ds.hub.describe()}: tried, failed: "
                f"{type(err).__name__}: {_reason(err)}"
            )
        else:
            logger.info("loaded %d %s/%s records from the hub", len(records), name, split)
            return _check_records(name, records, f"hub {ds.hub.describe()}")

    lines = "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
    folders = ", ".join(f"{n}/" for n in [name, *(n for n in list_datasets() if n != name)][:4])
    raise DataNotFoundError(
        f"could not find dataset {name!r} (split {split!r}). Places tried:\n{lines}\n"
        f"To fix: set {DATA_DIR_ENV} to the data folder that holds {folders} ..., for example "
        f"`export {DATA_DIR_ENV}=/path/to/shared/data`, or pass --data-dir /path/to/shared/data "
        "(path=... in Python)."
    )


# --------------------------------------------------------------------------- gsm8k

GSM8K_SPLITS = ("test", "train", "test_socratic")


def _gsm8k_record(row: Any, split: str, index: int, where: str) -> dict:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("question", "answer"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"{where}: missing or non-string field {key!r}")
    try:
        target = gsm_ground_truth(row["answer"])
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return {
        "id": f"gsm8k-{split}-{index}",
        "question": row["question"],
        "answer": row["answer"],
        "target": target,
    }


def _read_gsm8k(root: Path, split: str) -> list[dict]:
    file = root if root.is_file() else root / "gsm8k" / f"{split}.jsonl"
    if root.is_file():
        # A file given directly names its own split ("train.jsonl"), which keeps ids honest.
        split = file.stem if file.stem in GSM8K_SPLITS else split
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    records = []
    text = _decode(_read_data_bytes(file, root), file)
    for index, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        where = f"{file}, line {index + 1}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
        records.append(_gsm8k_record(row, split, index, where))
    return records


def _gsm8k_from_hub(rows: Iterable[Mapping[str, Any]], split: str) -> list[dict]:
    return [
        _gsm8k_record(row, split, i, f"hub openai/gsm8k {split}, row {i}")
        for i, row in enumerate(rows)
    ]


# --------------------------------------------------------------------------- mmlu

MMLU_SPLITS = ("test", "dev", "val")
_LETTERS = "ABCD"


def _read_mmlu_csv(file: Path, subject: str, split: str, root: Path) -> list[dict]:
    records = []
    # No header in these files: the first row is a question (the original code dropped it).
    # utf-8-sig so a byte-order mark never ends up inside the first question.
    text = _decode(_read_data_bytes(file, root), file, "utf-8-sig")
    with io.StringIO(text, newline="") as fh:
        reader = csv.reader(fh)
        index = 0
        for row in reader:
            if not row:
                continue
            where = f"{file}, row {index + 1} (ending on line {reader.line_num})"
            if len(row) != 6:
                raise ValueError(
                    f"{where}: expected 6 columns (question, A, B, C, D, answer), got {len(row)}"
                )
            answer = row[5].strip()
            if answer not in _LETTERS or len(answer) != 1:
                raise ValueError(f"{where}: answer must be one of A, B, C, D, got {row[5]!r}")
            records.append(
                {
                    "id": f"mmlu-{subject}-{split}-{index}",
                    "subject": subject,
                    "question": row[0],
                    "choices": row[1:5],
                    "answer": answer,
                }
            )
            index += 1
    return records


def _read_mmlu(root: Path, split: str) -> list[dict]:
    if root.is_file():
        subject, _, file_split = root.stem.rpartition("_")
        if not subject or file_split not in MMLU_SPLITS:
            subject, file_split = root.stem, split
        return _read_mmlu_csv(root, subject, file_split, root)
    folder = root / "mmlu" / split
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no CSV files in {folder}")
    records = []
    suffix = f"_{split}"
    for file in files:
        subject = file.stem[: -len(suffix)] if file.stem.endswith(suffix) else file.stem
        records.extend(_read_mmlu_csv(file, subject, split, root))
    return records


def _mmlu_from_hub(rows: Iterable[Mapping[str, Any]], split: str) -> list[dict]:
    # The hub's "all" config has columns question, subject, choices (list), answer (0-3).
    by_subject: dict[str, list[dict]] = {}
    for i, row in enumerate(rows):
        choices, answer = list(row["choices"]), row["answer"]
        if len(choices) != 4 or answer not in range(4):
            raise ValueError(f"hub cais/mmlu {split}, row {i}: malformed choices/answer")
        subject = row["subject"]
        items = by_subject.setdefault(subject, [])
        items.append(
            {
                "id": f"mmlu-{subject}-{split}-{len(items)}",
                "subject": subject,
                "question": row["question"],
                "choices": choices,
                "answer": _LETTERS[answer],
            }
        )
    # Same order as the local copy: subjects sorted by name, rows in file order.
    return [record for subject in sorted(by_subject) for record in by_subject[subject]]


# --------------------------------------------------------------------------- biography

_BULLET = re.compile(r"^\s*(?:[-•*]\s*)")
_TRAILING_PAREN = re.compile(r"\s*\([^()]*\)\s*$")


def _biography_facts(text: str) -> list[str]:
    facts = []
    for line in text.splitlines():
        is_bullet = _BULLET.match(line) is not None
        fact = _BULLET.sub("", line, count=1).strip()
        # A few entries carry a heading such as "Summary:" above their bullets; not a fact.
        if not fact or (not is_bullet and fact.endswith(":")):
            continue
        facts.append(fact)
    return facts


def _read_biography(root: Path, split: str) -> list[dict]:
    file = root if root.is_file() else root / "biography" / "article.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    try:
        people = json.loads(_decode(_read_data_bytes(file, root), file))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}, line {err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(people, dict):
        raise ValueError(f"{file}: expected a JSON object of name -> facts")
    records = []
    for name in sorted(people):
        if not isinstance(people[name], str):
            raise ValueError(f"{file}: facts of {name!r} must be a string of '- ' bullets")
        records.append(
            {
                "id": name,
                "name": name,
                "person": _TRAILING_PAREN.sub("", name),
                "facts": _biography_facts(people[name]),
            }
        )
    return records


register_dataset(
    "gsm8k",
    _read_gsm8k,
    HubSource("openai/gsm8k", "main", _gsm8k_from_hub),
    splits=GSM8K_SPLITS,
)
register_dataset(
    "mmlu",
    _read_mmlu,
    HubSource("cais/mmlu", "all", _mmlu_from_hub, {"val": "validation"}),
    splits=MMLU_SPLITS,
)
# The biographies are one file with no split; "all" is accepted as the honest name for it.
register_dataset("biography", _read_biography, None, splits=("test", "all"))
