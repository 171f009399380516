import pytest

from chorus_selfee.datasets import load_instructions
from chorus_selfee.judge import aggregate, judge_reviews, parse_scores, table
from chorus_selfee.records import PreferenceRecord, ReviewRecord
from chorus_shared.data import load_dataset_records
from chorus_shared.models import Completion, SamplingParams


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        ("8 6\nAssistant 1 was better.", (8.0, 6.0)),
        ("8,6\nreason", (8.0, 6.0)),
        ("9.5 7\n", (9.5, 7.0)),
        ("Let me solve it.\nSo the scores are\n(3, 8)", (3.0, 8.0)),  # the last line's tuple
        ("Both answers are right.\nOutput: (10, 9)", (10.0, 9.0)),
        ("Two words\n(10, 9)", None),  # a two-part first line that is not numbers
        # A review whose body quotes a pair from the question (Vicuna question 70's segment
        # "(10, 4)") and whose last line holds no pair: flagged, never read as scores.
        ("Assistant 1 computed the length from (2, -2) and (10, 4).\nBoth are right.", None),
        ("Assistant 1 used the points (10, 4) well.\nScores: 9 and 8", None),
        ("0 7\nAssistant 1 gave no answer.", None),  # a score outside 1..10
        ("85 90\npercentages", None),
        ("Both answers are fine.\nAssistant 2 is more detailed.", None),  # no score line
        ("", None),
        ("8 6 5\nthree numbers", None),
        ("8, 6\nreason", None),  # "8  6" is three parts for the original: then the last line
        ("Assistant 1\n(8, 6)", None),  # two parts that are not numbers: flagged at once
    ],
)
def test_parse_scores_as_the_original(review, expected) -> None:
    assert parse_scores(review) == expected


def _rev(q, cat, order, text):
    return ReviewRecord(id=f"{q}-{order}", question=q, category=cat, order=order, review=text)


def test_aggregate_leaves_both_orders_of_a_flagged_question_out() -> None:
    reviews = [
        _rev("q1", "generic", "model-first", "8 6\n"),
        _rev("q1", "generic", "reference-first", "9 7\n"),  # reference 9, model 7
        _rev("q2", "math", "model-first", "4 8\n"),
        _rev("q2", "math", "reference-first", "no scores here"),  # flagged: q2 drops out
    ]
    m = aggregate(reviews)
    assert (m["model_total"], m["reference_total"]) == (15, 15)
    assert (m["parsed"], m["unparsed"]) == (2, 2)
    assert m["flagged_questions"] == ["q2"] and m["flagged_reviews"] == 1
    assert m["judged_questions"] == 1
    assert m["per_category"]["math"]["relative"] is None
    assert "| all | 100.0% |" in table(m)
    one_order = aggregate([_rev("q3", "generic", "model-first", "8 6\n")])
    assert one_order["relative"] is None and one_order["flagged_questions"] == ["q3"]


def _items(qs, mine="MODEL", ref="REF"):
    return [
        {
            "id": f"{q['id']}-{o}",
            "question": q["id"],
            "category": q["category"],
            "instruction": q["instruction"],
            "order": o,
            "model_answer": mine,
            "reference_answer": ref,
        }
        for q in qs
        for o in ("model-first", "reference-first")
    ]


def test_judge_reviews_both_orders_category_prompts_and_errors(scripted) -> None:
    prompts = {p["category"]: p for p in load_dataset_records("vicuna80-judge", "test")}
    qs = [q for q in load_instructions("vicuna80") if q["category"] == "generic"][:2]
    qs += [q for q in load_instructions("vicuna80") if q["category"] == "math"][:1]

    def reply(conv):
        text = conv[-1]["content"]
        first = text.split("[The Start of Assistant 1's Answer]\n", 1)[1].split("\n", 1)[0]
        if "mathematical proficiency" in text:
            return Completion(text="", finish_reason="error", error="HTTP 400 from the judge")
        return "9 5\nx" if first == "MODEL" else "6 9\ny"

    judge = scripted(reply)
    recs = judge_reviews(judge, prompts, _items(qs), SamplingParams())
    assert len(judge.calls) == 1 and len(judge.calls[0]) == 2 * len(qs)
    errored = [r for r in recs if r.get("error")]
    # A failed reply is an errored record (retried on resume), never a review to parse.
    assert [r["id"] for r in errored] == [
        f"{qs[2]['id']}-model-first",
        f"{qs[2]['id']}-reference-first",
    ]
    assert errored[0]["error"] == "HTTP 400 from the judge"
    m = aggregate([ReviewRecord.from_json(r) for r in recs if not r.get("error")])
    # generic: model 9 (first) + 9 (second position in "6 9"); reference 5 + 6.
    assert m["per_category"]["generic"]["model_total"] == 18 * 2
    assert m["per_category"]["generic"]["reference_total"] == 11 * 2


def test_datasets_vicuna_and_mt_bench() -> None:
    v = load_instructions("vicuna80")
    assert len(v) == 80 and v[0]["id"] == "vicuna80-1"
    assert sum(q["category"] == "coding" for q in v) == 7
    mt = load_instructions("mt_bench")
    assert len(mt) == 80 and mt[0]["instruction"]


FAKE_JUDGE = '''
class LengthJudge:
    """Prefers the longer answer; logit = difference in words (antisymmetric by design)."""

    def __init__(self, target):
        self.target = target
        self.calls = []

    def compare(self, prompts, answers_a, answers_b):
        self.calls.append(len(prompts))
        return [float(len(a.split()) - len(b.split())) for a, b in zip(answers_a, answers_b)]


def load(target):
    return LengthJudge(target)
'''


@pytest.fixture
def fake_judge_scheme(tmp_path, monkeypatch) -> str:
    """Register scheme ``lenjudge`` in ``chorus.pairwise_judges`` as an installed package would."""
    root = tmp_path / "site"
    (root / "selfee_fake_judge-0.1.dist-info").mkdir(parents=True)
    (root / "selfee_fake_judge-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: selfee-fake-judge\nVersion: 0.1\n"
    )
    (root / "selfee_fake_judge-0.1.dist-info" / "entry_points.txt").write_text(
        "[chorus.pairwise_judges]\nlenjudge = selfee_fake_judge:load\n"
    )
    (root / "selfee_fake_judge.py").write_text(FAKE_JUDGE)
    monkeypatch.syspath_prepend(str(root))
    return "lenjudge"


def test_evaluate_with_a_pairwise_judge_plugged_in_by_spec(tmp_path, fake_judge_scheme) -> None:
    import json

    from chorus_selfee.cli import main
    from chorus_shared.judges import available_judge_schemes
    from chorus_shared.runs import RunDir

    assert fake_judge_scheme in available_judge_schemes()
    ids = [q["id"] for q in load_instructions("vicuna80")[:4]]
    mine = tmp_path / "mine.jsonl"
    ref = tmp_path / "ref.jsonl"
    # Model answers: longer on questions 1 and 2, shorter on 3, equal on 4.
    mine.write_text(
        "".join(
            json.dumps({"question_id": i, "text": t}) + "\n"
            for i, t in zip((1, 2, 3, 4), ("a b c", "a b", "a", "a b"), strict=True)
        )
    )
    ref.write_text(
        "".join(json.dumps({"question_id": i, "text": "x y"}) + "\n" for i in (1, 2, 3, 4))
    )
    out = tmp_path / "ev"
    args = ["evaluate", "--answers", str(mine), "--reference", str(ref), "--out", str(out)]
    assert main([*args, "--judge", f"{fake_judge_scheme}:/some/folder", "--limit", "4"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (m["judge_kind"], m["wins"], m["losses"], m["ties"], m["invalid"]) == (
        "pairwise",
        1,
        1,
        2,
        0,
    )  # q1 3 vs 2 words: win; q2 and q4 ties; q3 loss
    assert m["win_rate"] == pytest.approx((1 + 2 / 2) / 4)
    assert [r["id"] for r in RunDir.open(out).records()] == [f"{i}-pairwise" for i in ids]
    assert m["judged_of_questions"] == "4 of 4 questions"
    # An unknown scheme names the installed pairwise schemes; nothing is written.
    bad = tmp_path / "bad"
    rc = main(["evaluate", "--answers", str(mine), "--reference", str(ref), "--out", str(bad),
               "--judge", "nosuch:/x"])  # fmt: skip
    assert rc == 2 and not bad.exists()


def test_pairwise_table_and_invalid_logits() -> None:
    from chorus_selfee.judge import aggregate_pairwise, judge_pairwise

    class NaNJudge:
        def compare(self, prompts, a, b):
            return [float("nan"), 2.0]

    qs = load_instructions("vicuna80")[:2]
    items = [
        {"id": f"{q['id']}-pairwise", "question": q["id"], "category": q["category"],
         "instruction": q["instruction"], "model_answer": "m", "reference_answer": "r"}
        for q in qs
    ]  # fmt: skip
    recs = [PreferenceRecord.from_json(r) for r in judge_pairwise(NaNJudge(), items)]
    m = aggregate_pairwise(recs)
    assert (m["invalid"], m["wins"], m["win_rate"]) == (1, 1, 1.0)
    assert "| all | 100.0% | 1 | 0 | 0 | 1 |" in table(m)
