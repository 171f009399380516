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
    m = RunDir.open(out).read_metrics()
    assert (m["judge_kind"], m["wins"], m["losses"], m["ties"], m["invalid"]) == (
        "pairwise",
        1,
        1,
        2,
        0,
    )  # q1 3 vs 2 words: win; q2 and q4 ties; q3 loss
    assert m["win_rate"] == pytest.approx((1 + 2 / 2) / 4)
    assert [r["id"] for r in RunDir.open(out).records()] == [f"{i}-pairwise" for i in ids]
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
    recs = judge_pairwise(NaNJudge(), qs, {q["id"]: "m" for q in qs}, {q["id"]: "r" for q in qs})
    m = aggregate_pairwise(recs)
    assert (m["invalid"], m["wins"], m["win_rate"]) == (1, 1, 1.0)
    assert "| all | 100.0% | 1 | 0 | 0 | 1 |" in table(m)
