"""The four tasks: loading (offline data in /work/shared/data), prompts, parsing, grading."""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from chorus_debate.tasks import (
    ARITHMETIC,
    BIOGRAPHY,
    GSM,
    MMLU,
    TASKS,
    get_task,
    load_arithmetic,
    load_biography,
    load_gsm,
    load_mmlu,
    sample_mmlu,
)
from chorus_shared.data import load_dataset_records

EXPRESSION = re.compile(r"^(\d+)\+(\d+)\*(\d+)\+(\d+)-(\d+)\*(\d+)$")
# Where the data loader finds the offline copy: $CHORUS_DATA_DIR, else the repository's sibling.
DATA = Path(
    os.environ.get("CHORUS_DATA_DIR")
    or Path(__file__).resolve().parents[3].parent / "shared" / "data"
)


# -- arithmetic ------------------------------------------------------------------------------


def test_arithmetic_items_are_deterministic_per_seed() -> None:
    assert load_arithmetic(20, 0) == load_arithmetic(20, 0)
    assert [i["question"] for i in load_arithmetic(20, 0)] != [
        i["question"] for i in load_arithmetic(20, 1)
    ]
    # A smaller limit is a prefix of a larger one with the same seed.
    assert load_arithmetic(5, 3) == load_arithmetic(20, 3)[:5]


# The paper's generator: np.random.seed(0), then randint(0, 30, size=6) per item, in order.
PAPER_FIRST_FIVE = [
    "12+15*21+0-3*27",
    "3+7*9+19-21*18",
    "4+23*6+24-24*12",
    "26+1*6+7-23*14",
    "24+17*5+25-13*8",
]


def test_arithmetic_items_are_the_papers() -> None:
    assert [i["question"] for i in load_arithmetic(5, 0)] == PAPER_FIRST_FIVE
    # The same numbers as NumPy's legacy *global* generator seeded once, as the paper does.
    np.random.seed(0)
    paper = []
    for _ in range(100):
        a, b, c, d, e, f = np.random.randint(0, 30, size=6)
        paper.append(f"{a}+{b}*{c}+{d}-{e}*{f}")
    assert [i["question"] for i in load_arithmetic(None, 0)] == paper


def test_arithmetic_default_is_100_items_with_unique_ids() -> None:
    items = load_arithmetic(None, 0)
    assert len(items) == 100
    assert len({i["id"] for i in items}) == 100


def test_arithmetic_targets_are_the_value_of_the_expression() -> None:
    items = load_arithmetic(100, 7)
    seen_negative = False
    for item in items:
        match = EXPRESSION.match(item["question"])
        assert match, item["question"]
        a, b, c, d, e, f = (int(x) for x in match.groups())
        assert all(0 <= x <= 29 for x in (a, b, c, d, e, f))
        assert item["target"] == a + b * c + d - e * f
        seen_negative |= item["target"] < 0
    # Over 100 items some targets are negative: signs must survive into the target.
    assert seen_negative


def test_arithmetic_prompt_contains_the_expression() -> None:
    item = load_arithmetic(1, 0)[0]
    prompt = ARITHMETIC.first_prompt(item)
    assert item["question"] in prompt
    assert "{" not in prompt


# -- GSM8K -----------------------------------------------------------------------------------


def _raw_gsm_targets() -> dict[str, tuple[str, float]]:
    """Targets read independently from the raw file: the text after '####', commas dropped."""
    out = {}
    with (DATA / "gsm8k" / "test.jsonl").open(encoding="utf-8") as fh:
        for index, line in enumerate(fh):
            raw = json.loads(line)["answer"].split("####")[-1].strip()
            out[f"gsm8k-test-{index}"] = (raw, float(raw.replace(",", "")))
    return out


def test_gsm_load_seed0_limit100() -> None:
    items = load_gsm(100, 0)
    assert len(items) == 100
    assert len({i["id"] for i in items}) == 100
    assert load_gsm(10, 0) == items[:10]
    assert [i["id"] for i in load_gsm(10, 1)] != [i["id"] for i in items[:10]]
    for item in items:
        assert isinstance(item["target"], int | float)
        assert item["question"] in GSM.first_prompt(item)


def test_gsm_targets_match_raw_answers_including_thousands_separators() -> None:
    raw = _raw_gsm_targets()
    items = load_gsm(None, 0)
    assert len(items) == len(raw)
    with_comma = 0
    for item in items:
        text, value = raw[item["id"]]
        assert item["target"] == value, (item["id"], text)
        with_comma += "," in text
    assert with_comma > 0  # the data really has e.g. "#### 1,600"
    # One concrete case, checked by hand.
    by_id = {i["id"]: i for i in items}
    comma_ids = [k for k, (t, _) in raw.items() if "," in t]
    text, _ = raw[comma_ids[0]]
    assert by_id[comma_ids[0]]["target"] == int(text.replace(",", ""))
    assert by_id[comma_ids[0]]["target"] >= 1000


# -- MMLU ------------------------------------------------------------------------------------


def test_mmlu_items_have_choices_letters_and_target() -> None:
    items = load_mmlu(30, 0)
    assert len(items) == 30
    assert len({i["id"] for i in items}) == 30
    assert load_mmlu(5, 0) == items[:5]
    for item in items:
        assert [item["A"], item["B"], item["C"], item["D"]] == list(item["choices"])
        assert item["target"] in ("A", "B", "C", "D")
        assert item["target"] == item["answer"]
        prompt = MMLU.first_prompt(item)
        for letter in "ABCD":
            assert f"({letter}) {item[letter]}" in prompt


def test_mmlu_items_are_the_csv_rows_they_name() -> None:
    for item in load_mmlu(10, 0):
        subject, row = re.fullmatch(r"mmlu-(\w+)-test-(\d+)", item["source_id"]).groups()
        with (DATA / "mmlu" / "test" / f"{subject}_test.csv").open(newline="") as fh:
            rows = list(csv.reader(fh))  # no header row: row 0 is a question
        assert item["subject"] == subject
        assert item["question"] == rows[int(row)][0]
        assert item["choices"] == rows[int(row)][1:5]
        assert item["target"] == rows[int(row)][5]


def test_mmlu_subjects_are_drawn_uniformly_then_questions() -> None:
    # The paper picks a subject uniformly, then a question in it (with replacement), so the
    # big subjects do not dominate: professional_law is ~1/57, not ~11 % of the questions.
    records = load_dataset_records("mmlu", "test")
    draws = sample_mmlu(records, 57 * 400, 0)
    counts = Counter(d["subject"] for d in draws)
    assert len(counts) == 57
    expected = len(draws) / 57
    # 400 expected per subject; 5 standard deviations (~20 each) either side.
    assert all(abs(c - expected) < 100 for c in counts.values()), counts.most_common(3)
    assert counts["professional_law"] / len(draws) < 0.03


def test_mmlu_draws_are_seeded_prefixes_with_replacement() -> None:
    items = load_mmlu(300, 0)
    assert [i["id"] for i in load_mmlu(20, 0)] == [i["id"] for i in items[:20]]
    assert [i["id"] for i in load_mmlu(20, 1)] != [i["id"] for i in items[:20]]
    assert len({i["id"] for i in items}) == 300  # every draw is its own item...
    sources = [i["source_id"] for i in items]
    # ...and with replacement a question can come twice (evaluate counts these).
    draws = sample_mmlu(load_dataset_records("mmlu", "test"), 3000, 0)
    assert len({d["id"] for d in draws}) < 3000
    assert len(sources) == 300


# -- biographies -----------------------------------------------------------------------------


def test_biography_default_40_people_sorted_then_shuffled_with_seed_1() -> None:
    people = load_biography(None, 1)
    assert len(people) == 40
    assert BIOGRAPHY.default_seed == 1
    names = sorted(json.loads((DATA / "biography" / "article.json").read_text()))
    random.Random(1).shuffle(names)
    assert [p["id"] for p in people] == names[:40]
    for person in people:
        assert person["facts"], person["id"]
        assert all(isinstance(f, str) and f.strip() for f in person["facts"])
        assert not re.search(r"\(.*\)\s*$", person["person"])
        assert person["person"] in BIOGRAPHY.first_prompt(person)


def test_biography_person_drops_parenthesised_suffix() -> None:
    everyone = {p["id"]: p for p in load_biography(10_000, 1)}
    suffixed = [k for k in everyone if k.endswith(")")]
    assert suffixed
    for key in suffixed:
        assert "(" not in everyone[key]["person"]
        assert key.startswith(everyone[key]["person"])
    assert everyone["Adele Goldberg (computer scientist)"]["person"] == "Adele Goldberg"


# -- parsing and grading ---------------------------------------------------------------------


def test_reply_parsers() -> None:
    assert GSM.parse("First 1,000 + 234, so \\boxed{1,234}") == 1234
    assert GSM.parse("no box, the answer is 12.") == 12
    assert ARITHMETIC.parse("3 - 20 = -17") == -17
    assert ARITHMETIC.parse("... = -17") == -17
    assert MMLU.parse("Not (A) nor (B); the answer is (C)") == "C"
    assert MMLU.parse("I cannot tell") is None
    assert GSM.parse("no idea") is None
    assert ARITHMETIC.parse("no idea") is None


def test_correct_answers_are_graded_right() -> None:
    assert ARITHMETIC.is_correct(-17.0, {"target": -17})
    assert GSM.is_correct(1234.0, {"target": 1234.0})
    assert not GSM.is_correct(1233.0, {"target": 1234.0})
    assert MMLU.is_correct("C", {"target": "C"})
    assert not MMLU.is_correct("B", {"target": "C"})


@pytest.mark.parametrize("task", [ARITHMETIC, GSM, MMLU], ids=lambda t: t.name)
def test_unparseable_reply_is_never_correct(task) -> None:
    for target in (0, 0.0, 42, "A", None):
        assert task.is_correct(None, {"target": target}) is False
    assert task.is_correct(task.parse("I have no idea."), {"target": 0}) is False


def test_biography_prompt_keeps_the_papers_framing() -> None:
    prompt = BIOGRAPHY.first_prompt({"person": "Ada Lovelace"})
    assert "computer scientist Ada Lovelace" in prompt
    assert "confident" not in prompt  # no instruction aimed at the yes / (yes + no) metric
    assert BIOGRAPHY.last_round_hint and "other agents' biographies" in BIOGRAPHY.last_round_hint


@pytest.mark.parametrize(
    ("reply", "declines"),
    [
        ("I don't know this person.", True),
        ("Sorry, I could not find information about Alan Turing.", True),
        ("I'm not familiar with this computer scientist.", True),
        ("  \nI do not know who that is.\n\n", True),
        ("- I don't know his birth year\n- He worked on compilers", False),  # two lines
        ("- Born in 1912 in London", False),
        ("", False),
    ],
)
def test_biography_one_line_declines(reply: str, declines: bool) -> None:
    assert BIOGRAPHY.declines is not None
    assert BIOGRAPHY.declines(reply) is declines


def test_biography_is_never_graded_by_exact_match() -> None:
    assert BIOGRAPHY.judged
    assert not BIOGRAPHY.is_correct("- a fact", {"target": ["- a fact"]})
    # The judge sees every line with text: bullets, numbered lines and prose alike.
    assert (
        BIOGRAPHY.parse("Intro\n- born 1815\n\n1. a poet\n  bye  ")
        == "Intro\n- born 1815\n1. a poet\nbye"
    )
    assert BIOGRAPHY.parse("   ") is None


def test_get_task_aliases_and_unknown_names() -> None:
    assert get_task("math") is ARITHMETIC
    assert get_task("gsm8k") is GSM
    assert get_task("bio") is BIOGRAPHY
    for name, task in TASKS.items():
        assert get_task(name) is task
    with pytest.raises(ValueError) as err:
        get_task("sudoku")
    for name in ("arithmetic", "gsm", "mmlu", "biography"):
        assert name in str(err.value)
    assert "sudoku" in str(err.value)
