"""Tests for chorus_shared.data: the lookup order, the readers, errors, and the real data."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from chorus_shared import data
from chorus_shared.data import (
    DATA_DIR_ENV,
    DataNotFoundError,
    list_datasets,
    load_dataset_records,
    register_dataset,
)

# The real evaluation data sits next to the repository (shared/src/chorus_shared -> repo root).
REAL_DATA = Path(data.__file__).resolve().parents[3].parent / "shared" / "data"


# ----------------------------------------------------------------------------- fixtures


def write_gsm8k(root: Path, tag: str = "", split: str = "test") -> Path:
    rows = [
        {"question": f"{tag}How many eggs?", "answer": "16 - 7 = <<16-7=9>>9\n#### 9"},
        {"question": f"{tag}How much money?", "answer": "She has 1,234 dollars.\n#### 1,234"},
        {"question": f"{tag}What is the change?", "answer": "It fell.\n#### -10"},
    ]
    file = root / "gsm8k" / f"{split}.jsonl"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return file


MMLU_ALGEBRA = (
    # The first row is a question, not a header.
    "Find the degree of Q(sqrt(2)) over Q.,0,2,4,6,B\n"
    '"Which is true, if any?","x, y",y,"a\nmultiline option",none,C\n'
)
MMLU_ANATOMY = "What is the largest organ?,skin,liver,heart,lung,A\n"


def write_mmlu(root: Path, split: str = "test") -> None:
    folder = root / "mmlu" / split
    folder.mkdir(parents=True, exist_ok=True)
    # Written in reverse name order: the reader must sort files by name.
    (folder / f"anatomy_{split}.csv").write_text(MMLU_ANATOMY, encoding="utf-8")
    (folder / f"abstract_algebra_{split}.csv").write_text(MMLU_ALGEBRA, encoding="utf-8")


def write_biography(root: Path) -> None:
    people = {
        "Zed Zebra (computer scientist)": "- Zed studies zebras\n\n- He was born in 1950\n",
        "Ada Lovelace": "Summary:\n\n- Ada wrote the first program\n-She worked with Babbage\n"
        "• She was a mathematician",
    }
    folder = root / "biography"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "article.json").write_text(json.dumps(people), encoding="utf-8")


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No env var, no sibling folders, hub offline: only what a test sets up can be found."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "_REPO_ROOT", tmp_path / "nowhere" / "repo")
    workdir = tmp_path / "work" / "cwd"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    force_hub_offline(monkeypatch)
    monkeypatch.setattr(data, "_REGISTRY", dict(data._REGISTRY))
    return tmp_path


def force_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # The libraries read these variables once, at import; patch them if already imported.
    for module, attr in [
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
    ]:
        if module in sys.modules:
            monkeypatch.setattr(sys.modules[module], attr, True, raising=False)


# ----------------------------------------------------------------------------- readers


def test_gsm8k_records(isolated: Path) -> None:
    write_gsm8k(isolated)
    records = load_dataset_records("gsm8k", "test", path=isolated)
    assert [r["id"] for r in records] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]
    # Thousands separators and minus signs survive (both were mangled by the original code).
    assert [r["target"] for r in records] == [9.0, 1234.0, -10.0]
    assert records[1]["question"] == "How much money?"
    assert records[1]["answer"].endswith("#### 1,234")


def test_mmlu_records_first_row_is_data_and_quotes_are_parsed(isolated: Path) -> None:
    write_mmlu(isolated)
    records = load_dataset_records("mmlu", "test", path=isolated)
    assert len(records) == 3  # no row was eaten as a header
    first = records[0]
    assert first == {
        "id": "mmlu-abstract_algebra-test-0",
        "subject": "abstract_algebra",
        "question": "Find the degree of Q(sqrt(2)) over Q.",
        "choices": ["0", "2", "4", "6"],
        "answer": "B",
    }
    assert records[1]["question"] == "Which is true, if any?"
    assert records[1]["choices"] == ["x, y", "y", "a\nmultiline option", "none"]
    assert [r["id"] for r in records][1:] == [
        "mmlu-abstract_algebra-test-1",
        "mmlu-anatomy-test-0",
    ]


def test_mmlu_other_splits(isolated: Path) -> None:
    write_mmlu(isolated, "dev")
    records = load_dataset_records("mmlu", "dev", path=isolated)
    assert records[0]["id"] == "mmlu-abstract_algebra-dev-0"


def test_biography_records(isolated: Path) -> None:
    write_biography(isolated)
    records = load_dataset_records("biography", path=isolated)
    assert [r["id"] for r in records] == ["Ada Lovelace", "Zed Zebra (computer scientist)"]
    ada, zed = records
    assert ada["person"] == "Ada Lovelace"
    assert ada["facts"] == [
        "Ada wrote the first program",
        "She worked with Babbage",
        "She was a mathematician",
    ]
    assert zed["name"] == "Zed Zebra (computer scientist)"
    assert zed["person"] == "Zed Zebra"
    assert zed["facts"] == ["Zed studies zebras", "He was born in 1950"]
    assert load_dataset_records("biography", "all", path=isolated) == records


def test_explicit_file_and_dataset_folder(isolated: Path) -> None:
    train = write_gsm8k(isolated, "train: ", split="train")
    by_file = load_dataset_records("gsm8k", path=train)
    assert by_file[0]["id"] == "gsm8k-train-0"  # the file names its split
    assert by_file[0]["question"].startswith("train: ")
    by_folder = load_dataset_records("gsm8k", "train", path=isolated / "gsm8k")
    assert by_folder == by_file

    write_mmlu(isolated)
    one_subject = load_dataset_records("mmlu", path=isolated / "mmlu" / "test" / "anatomy_test.csv")
    assert [r["id"] for r in one_subject] == ["mmlu-anatomy-test-0"]


# ----------------------------------------------------------------------------- lookup order


def test_lookup_order_explicit_then_env_then_sibling(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit, env, repo = isolated / "explicit", isolated / "env", isolated / "checkout" / "repo"
    write_gsm8k(explicit, "explicit: ")
    write_gsm8k(env, "env: ")
    write_gsm8k(repo.parent / "shared" / "data", "sibling: ")
    monkeypatch.setattr(data, "_REPO_ROOT", repo)
    monkeypatch.setenv(DATA_DIR_ENV, str(env))

    def source(**kwargs: object) -> str:
        return load_dataset_records("gsm8k", **kwargs)[0]["question"].split(":")[0]

    assert source(path=explicit) == "explicit"
    assert source(path=str(explicit)) == "explicit"
    assert source() == "env"
    monkeypatch.delenv(DATA_DIR_ENV)
    assert source() == "sibling"


def test_sibling_of_the_working_directory(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_gsm8k(isolated / "proj" / "shared" / "data", "cwd sibling: ")
    (isolated / "proj" / "main").mkdir()
    monkeypatch.chdir(isolated / "proj" / "main")
    assert load_dataset_records("gsm8k")[0]["question"].startswith("cwd sibling: ")


def test_missing_explicit_path_is_an_error_not_a_fallback(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_gsm8k(isolated / "env", "env: ")
    monkeypatch.setenv(DATA_DIR_ENV, str(isolated / "env"))
    with pytest.raises(DataNotFoundError, match=r"--data-dir .* is .*typo.*not there"):
        load_dataset_records("gsm8k", path=isolated / "typo")


def test_explicit_path_without_the_tasks_files_is_an_error(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / "other").mkdir()
    write_gsm8k(isolated / "checkout" / "shared" / "data", "sibling: ")
    monkeypatch.setattr(data, "_REPO_ROOT", isolated / "checkout" / "repo")
    with pytest.raises(DataNotFoundError, match=r"gsm8k.*not there"):
        load_dataset_records("gsm8k", path=isolated / "other")


def test_missing_env_data_dir_is_an_error_not_a_fallback(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_gsm8k(isolated / "checkout" / "shared" / "data", "sibling: ")
    monkeypatch.setattr(data, "_REPO_ROOT", isolated / "checkout" / "repo")
    monkeypatch.setenv(DATA_DIR_ENV, str(isolated / "nonexistent"))
    with pytest.raises(DataNotFoundError, match=rf"\${DATA_DIR_ENV} is .*nonexistent"):
        load_dataset_records("gsm8k")


def test_malformed_data_is_not_masked_by_a_later_copy(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = isolated / "bad" / "gsm8k" / "test.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{not json\n', encoding="utf-8")
    write_gsm8k(isolated / "env")
    monkeypatch.setenv(DATA_DIR_ENV, str(isolated / "env"))
    with pytest.raises(ValueError, match=r"test\.jsonl, line 2: invalid JSON"):
        load_dataset_records("gsm8k", path=isolated / "bad")


def test_error_lists_every_place_tried(isolated: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_dataset_records("gsm8k")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    for expected in [
        "'gsm8k'",
        "explicit path: not set",
        f"${DATA_DIR_ENV}: not set",
        f"sibling folder {isolated / 'nowhere' / 'shared' / 'data'}",
        f"sibling folder {isolated / 'work' / 'shared' / 'data'}",
        "Hugging Face hub openai/gsm8k (main): tried, failed:",
        f"set {DATA_DIR_ENV}",
        "--data-dir",
    ]:
        assert expected in message
    assert message.count("does not exist") == 2


def test_error_when_nothing_is_set_and_there_is_no_hub_copy(isolated: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_dataset_records("biography")
    message = str(info.value)
    assert "explicit path: not set" in message
    assert f"${DATA_DIR_ENV}: not set" in message
    assert "no hub copy" in message


# ----------------------------------------------------------------------------- hub path


def fake_datasets(monkeypatch: pytest.MonkeyPatch, rows: list[dict]) -> list[tuple]:
    calls: list[tuple] = []

    def load_dataset(path: str, config: str | None = None, split: str | None = None) -> list:
        calls.append((path, config, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hub_fallback_gsm8k(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_datasets(monkeypatch, [{"question": "q", "answer": "x\n#### 2,000"}])
    records = load_dataset_records("gsm8k", "train")
    assert calls == [("openai/gsm8k", "main", "train")]
    assert records == [
        {"id": "gsm8k-train-0", "question": "q", "answer": "x\n#### 2,000", "target": 2000.0}
    ]


def test_hub_fallback_mmlu_matches_the_local_layout(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {"question": "b0", "subject": "zoology", "choices": ["1", "2", "3", "4"], "answer": 3},
        {"question": "a0", "subject": "anatomy", "choices": ["1", "2", "3", "4"], "answer": 0},
        {"question": "b1", "subject": "zoology", "choices": ["1", "2", "3", "4"], "answer": 1},
    ]
    calls = fake_datasets(monkeypatch, rows)
    records = load_dataset_records("mmlu", "val")
    assert calls == [("cais/mmlu", "all", "validation")]  # our "val" is the hub's "validation"
    assert [(r["id"], r["answer"]) for r in records] == [
        ("mmlu-anatomy-val-0", "A"),
        ("mmlu-zoology-val-0", "D"),
        ("mmlu-zoology-val-1", "B"),
    ]


def test_hub_exception_is_just_a_place_that_failed(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=broken))
    with pytest.raises(DataNotFoundError, match="tried, failed: RuntimeError: disk on fire"):
        load_dataset_records("gsm8k")


# ----------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q", "answer": "#### 1"}\n{"question": "q"\n', "line 2: invalid JSON"),
        ('{"question": "q", "answer": "#### 1"}\n\n{"answer": "#### 2"}\n', "line 3: missing"),
        ('{"question": "q", "answer": "no marker"}\n', "line 1: no '#### '"),
        ("[1, 2]\n", "line 1: expected a JSON object"),
    ],
)
def test_malformed_gsm8k_names_file_and_line(isolated: Path, content: str, message: str) -> None:
    file = isolated / "gsm8k" / "test.jsonl"
    file.parent.mkdir()
    file.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_dataset_records("gsm8k", path=isolated)
    assert str(file) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q,a,b,c,d,A\nq2,a,b,c,d\n", "row 2 (ending on line 2): expected 6 columns"),
        ("q,a,b,c,d,E\n", "row 1 (ending on line 1): answer must be one of A, B, C, D"),
        ("question,A,B,C,D,answer\n", "answer must be one of A, B, C, D, got 'answer'"),
    ],
)
def test_malformed_mmlu_names_file_and_row(isolated: Path, content: str, message: str) -> None:
    file = isolated / "mmlu" / "test" / "x_test.csv"
    file.parent.mkdir(parents=True)
    file.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_dataset_records("mmlu", path=isolated)
    assert str(file) in str(info.value)
    assert message in str(info.value)


def test_malformed_biography(isolated: Path) -> None:
    file = isolated / "biography" / "article.json"
    file.parent.mkdir()
    file.write_text('{\n"A": "- x",\n"B": \n}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"article\.json, line 4: invalid JSON"):
        load_dataset_records("biography", path=isolated)
    file.write_text('{"A": ["- x"]}', encoding="utf-8")
    with pytest.raises(ValueError, match="facts of 'A' must be a string"):
        load_dataset_records("biography", path=isolated)


def test_unknown_dataset_and_split(isolated: Path) -> None:
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        load_dataset_records("nope")
    with pytest.raises(ValueError, match="unknown split 'validation' for gsm8k"):
        load_dataset_records("gsm8k", "validation")
    with pytest.raises(ValueError, match="unknown split 'train' for biography"):
        load_dataset_records("biography", "train")


# ----------------------------------------------------------------------------- registry


def test_register_a_new_dataset(isolated: Path) -> None:
    def read_words(root: Path, split: str) -> list[dict]:
        file = root / "words" / f"{split}.txt"
        if not file.is_file():
            raise FileNotFoundError(f"{file} does not exist")
        return [{"id": f"words-{i}", "word": w} for i, w in enumerate(file.read_text().split())]

    register_dataset("words", read_words, ("someone/words", None, lambda rows, split: []))
    assert "words" in list_datasets()
    assert list_datasets() == sorted(list_datasets())
    (isolated / "words").mkdir()
    (isolated / "words" / "test.txt").write_text("alpha beta")
    assert load_dataset_records("words", path=isolated) == [
        {"id": "words-0", "word": "alpha"},
        {"id": "words-1", "word": "beta"},
    ]
    register_dataset("words", read_words)  # the same reader again (a re-import) is fine
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("words", lambda root, split: [])
    register_dataset("words", lambda root, split: [{"id": 1}], replace=True)
    assert load_dataset_records("words", path=isolated) == [{"id": 1}]


def test_records_must_have_unique_ids(isolated: Path) -> None:
    register_dataset("no_ids", lambda root, split: [{"text": "x"}])
    register_dataset("dup_ids", lambda root, split: [{"id": "a"}, {"id": "a"}])
    with pytest.raises(ValueError, match="has no 'id'"):
        load_dataset_records("no_ids", path=isolated)
    with pytest.raises(ValueError, match=r"'a' .* is not unique"):
        load_dataset_records("dup_ids", path=isolated)


def test_builtin_datasets_are_registered() -> None:
    assert {"gsm8k", "mmlu", "biography"} <= set(list_datasets())


# ----------------------------------------------------------------------------- the real data


@pytest.fixture
def real_sibling(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Find data the way a fresh checkout does: no env var, the sibling folder."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    return REAL_DATA


def test_real_gsm8k(real_sibling: Path) -> None:
    test = load_dataset_records("gsm8k", "test")
    assert len(test) == 1319
    assert test[0]["target"] == 18.0  # Janet's ducks
    targets = {r["target"] for r in test}
    assert {1450000.0, -10.0, -3.0, 2125.0} <= targets  # commas and signs in the ground truth
    assert len(load_dataset_records("gsm8k", "train")) == 7473
    assert len(load_dataset_records("gsm8k", "test_socratic")) == 1319
    # Ids are stable from one load to the next, and explicit path gives the same records.
    assert load_dataset_records("gsm8k", path=real_sibling) == test


def test_real_mmlu(real_sibling: Path) -> None:
    test = load_dataset_records("mmlu", "test")
    assert len(test) == 14042
    assert len({r["subject"] for r in test}) == 57
    per_subject: dict[str, int] = {}
    for r in test:
        per_subject[r["subject"]] = per_subject.get(r["subject"], 0) + 1
    assert per_subject["machine_learning"] == 112
    assert per_subject["professional_law"] == 1534
    # The first row of each file is a question: the original code read it as a header.
    assert test[0]["id"] == "mmlu-abstract_algebra-test-0"
    assert test[0]["question"].startswith("Find the degree for the given field extension")
    assert test[0]["answer"] == "B"
    assert len(load_dataset_records("mmlu", "dev")) == 285
    assert len(load_dataset_records("mmlu", "val")) == 1531


def test_real_biography(real_sibling: Path) -> None:
    people = load_dataset_records("biography")
    assert len(people) == 524
    names = [p["name"] for p in people]
    assert names == sorted(names)
    assert all(p["facts"] for p in people)
    assert all("(" not in p["person"] for p in people if p["name"].endswith(")"))
    assert all(not f.startswith(("-", "•")) and f != "Summary:" for p in people for f in p["facts"])


# ----------------------------------------------------------------------------- issue 5


def test_non_utf8_line_names_file_and_line(isolated: Path) -> None:
    file = write_gsm8k(isolated / "d")
    file.write_bytes(file.read_bytes() + b'{"question": "caf\xe9", "answer": "#### 1"}\n')
    with pytest.raises(ValueError, match=r"test\.jsonl, line 4: not valid UTF-8"):
        load_dataset_records("gsm8k", path=isolated / "d")


def test_non_utf8_mmlu_row_names_file_and_line(isolated: Path) -> None:
    write_mmlu(isolated / "d")
    bad = isolated / "d" / "mmlu" / "test" / "anatomy_test.csv"
    bad.write_bytes(MMLU_ANATOMY.encode() + b"Caf\xe9?,a,b,c,d,A\n")
    with pytest.raises(ValueError, match=r"anatomy_test\.csv, line 2: not valid UTF-8"):
        load_dataset_records("mmlu", path=isolated / "d")


def test_fingerprint_follows_the_content_not_the_folder(isolated: Path) -> None:
    write_gsm8k(isolated / "a")
    write_gsm8k(isolated / "b")
    write_gsm8k(isolated / "c", tag="other ")
    prints = []
    for folder in "abc":
        with data.track_data_reads() as reads:
            load_dataset_records("gsm8k", path=isolated / folder)
        prints.append(reads)
    assert list(prints[0]) == ["gsm8k/test.jsonl"]
    assert prints[0]["gsm8k/test.jsonl"].startswith("sha256:")
    assert prints[0] == prints[1]
    assert prints[0] != prints[2]
    # Outside the block nothing is collected.
    load_dataset_records("gsm8k", path=isolated / "a")
    assert list(prints[0]) == ["gsm8k/test.jsonl"]


def test_fingerprint_lists_every_mmlu_file(isolated: Path) -> None:
    write_mmlu(isolated / "d")
    with data.track_data_reads() as reads:
        load_dataset_records("mmlu", path=isolated / "d")
    assert sorted(reads) == ["mmlu/test/abstract_algebra_test.csv", "mmlu/test/anatomy_test.csv"]
