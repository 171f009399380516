import pytest

from chorus_selfee.datasets import load_instructions
from chorus_selfee.judge import aggregate, judge_pairs, parse_scores, table
from chorus_shared.data import load_dataset_records
from chorus_shared.models import Completion, SamplingParams


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        ("8 6\nAssistant 1 was better.", (8.0, 6.0)),
        ("8,6\nreason", (8.0, 6.0)),
        ("7.5, 9\n", (7.5, 9.0)),
        ("Let me solve it.\nFirst (1, 2) then finally (3, 8).", (3.0, 8.0)),
        ("Scores: 8 and 6", None),
        ("", None),
        ("8 6 5\nthree numbers", None),
    ],
)
def test_parse_scores_shapes(review, expected) -> None:
    assert parse_scores(review) == expected


def _rev(cat, order, m, r):
    return {"category": cat, "order": order, "model_score": m, "reference_score": r}


def test_aggregate_hand_computed() -> None:
    reviews = [
        _rev("generic", "model-first", 8, 6),
        _rev("generic", "reference-first", 7, 9),
        _rev("math", "model-first", 4, 8),
        _rev("math", "reference-first", None, None),
    ]
    m = aggregate(reviews)
    # model 8+7+4 = 19, reference 6+9+8 = 23; one unparsed, left out of both totals.
    assert m["model_total"] == 19 and m["reference_total"] == 23
    assert m["relative"] == pytest.approx(19 / 23)
    assert (m["parsed"], m["unparsed"]) == (3, 1)
    assert m["per_category"]["generic"]["relative"] == pytest.approx(15 / 15)
    assert m["per_category"]["math"]["relative"] == pytest.approx(0.5)
    assert m["per_category"]["math"]["unparsed"] == 1
    assert "| all | 82.6% |" in table(m)
    assert aggregate([_rev("x", "model-first", None, None)])["relative"] is None


def test_judge_pairs_both_orders_and_category_prompts(scripted) -> None:
    prompts = {p["category"]: p for p in load_dataset_records("vicuna80-judge", "test")}
    qs = [q for q in load_instructions("vicuna80") if q["category"] in ("generic", "math")][:2]
    qs += [q for q in load_instructions("vicuna80") if q["category"] == "math"][:1]

    def reply(conv):
        text = conv[-1]["content"]
        first = text.split("[The Start of Assistant 1's Answer]\n", 1)[1].split("\n", 1)[0]
        if "mathematical proficiency" in text:
            return Completion(text="", finish_reason="error", error="boom")
        return "9 5\nx" if first == "MODEL" else "6 9\ny"

    judge = scripted(reply)
    answers_m = {q["id"]: "MODEL" for q in qs}
    answers_r = {q["id"]: "REF" for q in qs}
    recs = judge_pairs(judge, prompts, qs, answers_m, answers_r, SamplingParams())
    assert len(judge.calls) == 1 and len(judge.calls[0]) == 2 * len(qs)
    m = aggregate(recs)
    # generic: model 9 (first) + 9 (second position in "6 9"); reference 5 + 6.
    assert m["per_category"]["generic"]["model_total"] == 18 * 2
    assert m["per_category"]["generic"]["reference_total"] == 11 * 2
    assert m["per_category"]["math"]["unparsed"] == 2  # errors are unparsed, never guessed
    with pytest.raises(ValueError, match="answers missing"):
        judge_pairs(judge, prompts, qs, {}, answers_r, SamplingParams())


def test_datasets_vicuna_and_mt_bench() -> None:
    v = load_instructions("vicuna80")
    assert len(v) == 80 and v[0]["id"] == "vicuna80-1"
    assert sum(q["category"] == "coding" for q in v) == 7
    mt = load_instructions("mt_bench")
    assert len(mt) == 80 and mt[0]["instruction"]
