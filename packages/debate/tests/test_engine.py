"""The debate engine, driven by scripted fake models: batching, prompts, records."""

from __future__ import annotations

import itertools
import re

import pytest

from chorus_debate.debate import (
    DEBATE_PROMPT,
    REFLECTION_PROMPT,
    SUMMARIZE_PROMPT,
    DebateEngine,
    DebateSetup,
)
from chorus_debate.evaluate import RecordScore, declined_replies, score_record
from chorus_debate.judge import biography_score
from chorus_debate.methods import plan_method
from chorus_debate.records import DebateRecord
from chorus_debate.tasks import ARITHMETIC, BIOGRAPHY, load_arithmetic
from chorus_shared.models import Completion, SamplingParams

PARAMS = SamplingParams(max_new_tokens=16, temperature=0.7, seed=0)
EXPRESSION = re.compile(r"Compute (\d+)\+(\d+)\*(\d+)\+(\d+)-(\d+)\*(\d+)\.")


def _stored(records: list[DebateRecord]) -> list[dict]:
    """The records as written to records.jsonl (and checked to read back unchanged)."""
    stored = [r.to_json() for r in records]
    assert [DebateRecord.from_json(d) for d in stored] == records
    for d in stored:  # the writer stores replies only: grading happens in evaluate.py
        assert not {"answers", "final", "correct", "correct_by_round", "score"} & set(d)
    return stored


def _grade(record: dict) -> RecordScore:
    return score_record(ARITHMETIC, DebateRecord.from_json(record))


def _unparseable(record: dict) -> list[int]:
    return [sum(a is None for a in rnd) for rnd in _grade(record).answers]


def _bio(record: dict) -> tuple[float | None, dict[str, int]]:
    """(score, counts with declined) of a biography record, as evaluate.py computes them."""
    score, counts = biography_score(record["judge"]["verdicts"])
    return score, {
        **counts,
        "declined": declined_replies(BIOGRAPHY, DebateRecord.from_json(record)),
    }


def _setup(method: str, agents: int = 3, rounds: int = 2, **kwargs) -> DebateSetup:
    return DebateSetup(plan=plan_method(method, agents, rounds), params=PARAMS, **kwargs)


def _true_value(conversation) -> int:
    """The fake's own arithmetic: the value of the expression in the first user turn."""
    first = next(m for m in conversation if m["role"] == "user")
    a, b, c, d, e, f = (int(x) for x in EXPRESSION.search(first["content"]).groups())
    return a + b * c + d - e * f


def _numbered_replies():
    """A reply function giving every call a distinct text ("reply #k"), k in call order."""
    counter = itertools.count()
    return lambda conversation: f"reply #{next(counter)}"


def _by_item(conversations, n_agents):
    """Split one call's conversations into per-item groups of n_agents (item-major order)."""
    groups = [conversations[k : k + n_agents] for k in range(0, len(conversations), n_agents)]
    for group in groups:
        assert len({g[0]["content"] for g in group}) == 1  # the same question within a group
    return groups


@pytest.fixture
def items():
    items = load_arithmetic(4, 0)
    assert len({i["question"] for i in items}) == 4
    return items


# -- batching --------------------------------------------------------------------------------


def test_one_call_per_round_for_the_whole_window(fake_chat_model, items) -> None:
    model = fake_chat_model(lambda c: "I get 5.")
    records = _stored(DebateEngine(ARITHMETIC, [model] * 3, _setup("debate", 3, 3)).run(items))
    assert model.batch_sizes == [4 * 3] * 3
    assert len(records) == 4
    assert [r["id"] for r in records] == [i["id"] for i in items]
    # Conversation k of every call belongs to item k // 3: its first turn is that question.
    for call in model.calls:
        for k, conv in enumerate(call):
            assert conv[0] == {"role": "user", "content": ARITHMETIC.first_prompt(items[k // 3])}
    # The window's sampling parameters are the recipe's, with a seed derived per window.
    assert all(p.max_new_tokens == 16 and p.temperature == 0.7 for p in model.params)
    assert len({p.seed for p in model.params}) == 1


def test_window_seed_depends_on_the_first_item_only(fake_chat_model, items) -> None:
    model = fake_chat_model()
    engine = DebateEngine(ARITHMETIC, [model], _setup("single"))
    engine.run(items[:2])
    engine.run(items[:3])
    engine.run(items[1:3])
    seeds = [p.seed for p in model.params]
    assert seeds[0] == seeds[1] != seeds[2]


def test_single_and_majority_generate_one_round(fake_chat_model, items) -> None:
    single = fake_chat_model()
    DebateEngine(ARITHMETIC, [single], _setup("single")).run(items)
    assert single.batch_sizes == [4]
    majority = fake_chat_model()
    records = _stored(DebateEngine(ARITHMETIC, [majority] * 5, _setup("majority", 5, 3)).run(items))
    assert majority.batch_sizes == [4 * 5]
    assert all(len(r["finish_reasons"]) == 1 and len(r["agents"]) == 5 for r in records)
    assert all(len(_grade(r).answers[0]) == 5 for r in records)


def test_agent_count_must_match_the_plan(fake_chat_model) -> None:
    model = fake_chat_model()
    with pytest.raises(ValueError, match="3 agents planned but 2 models given"):
        DebateEngine(ARITHMETIC, [model, model], _setup("debate", 3, 2))


# -- what later rounds show ------------------------------------------------------------------


def test_round2_shows_the_other_agents_answers_and_restates_the_task(
    fake_chat_model, items
) -> None:
    model = fake_chat_model(_numbered_replies())
    DebateEngine(ARITHMETIC, [model] * 3, _setup("debate", 3, 2)).run(items)
    round2 = _by_item(model.calls[1], 3)
    for item, group in zip(items, round2, strict=True):
        first_replies = [conv[1]["content"] for conv in group]
        assert len(set(first_replies)) == 3  # every agent answered differently
        for a, conv in enumerate(group):
            assert [m["role"] for m in conv] == ["user", "assistant", "user"]
            turn = conv[2]["content"]
            for b, reply in enumerate(first_replies):
                if b == a:
                    assert reply not in turn
                else:
                    assert f'One agent answered:\n"""\n{reply}\n"""' in turn
            # Anonymous, as in the paper: no agent numbers or names.
            assert not re.search(r"Agent \d", turn)
            assert ARITHMETIC.first_prompt(item) in turn
            assert "final number" in turn
            assert turn.startswith(DEBATE_PROMPT.split("{others}")[0])


def test_round3_shows_the_round2_answers_not_round1(fake_chat_model, items) -> None:
    model = fake_chat_model(_numbered_replies())
    DebateEngine(ARITHMETIC, [model] * 2, _setup("debate", 2, 3)).run(items[:1])
    (agent0, agent1) = model.calls[2]
    assert len(agent0) == 5
    assert agent1[3]["content"] in agent0[4]["content"]  # agent 2's round-2 reply
    assert agent1[1]["content"] not in agent0[4]["content"]  # not its round-1 reply


def test_reflection_shows_the_agent_its_own_answer(fake_chat_model, items) -> None:
    model = fake_chat_model(_numbered_replies())
    records = _stored(DebateEngine(ARITHMETIC, [model], _setup("reflection", 3, 2)).run(items))
    assert model.batch_sizes == [4, 4]
    for item, conv, rec in zip(items, model.calls[1], records, strict=True):
        prompt = ARITHMETIC.first_prompt(item)
        assert conv[0] == {"role": "user", "content": prompt}
        assert conv[1]["role"] == "assistant"
        assert conv[2] == {"role": "user", "content": REFLECTION_PROMPT.format(task=prompt)}
        assert len(rec["agents"]) == 1
        assert len(_grade(rec).answers) == 2


def test_summarize_one_summarizer_call_per_later_round(fake_chat_model, items) -> None:
    agents = fake_chat_model(_numbered_replies(), spec="agent")
    counter = itertools.count()
    summarizer = fake_chat_model(lambda c: f"SUMMARY-{next(counter)}", spec="summarizer")
    engine = DebateEngine(
        ARITHMETIC, [agents] * 3, _setup("debate", 3, 3, summarize=True), summarizer=summarizer
    )
    records = _stored(engine.run(items))
    assert agents.batch_sizes == [12, 12, 12]
    assert summarizer.batch_sizes == [12, 12]  # rounds 2 and 3: one per (item, agent)

    # Round-1 replies, read from the round-2 histories (calls record what the model was sent).
    round1 = _by_item(agents.calls[1], 3)
    for s_conv, (i, a) in zip(
        summarizer.calls[0], itertools.product(range(4), range(3)), strict=True
    ):
        assert len(s_conv) == 1 and s_conv[0]["role"] == "user"
        text = s_conv[0]["content"]
        assert text.startswith(SUMMARIZE_PROMPT.split("{others}")[0])
        replies = [conv[1]["content"] for conv in round1[i]]
        assert replies[a] not in text
        assert all(r in text for b, r in enumerate(replies) if b != a)
    # Agent a of item i sees summary number (i * 3 + a) of that round, and not the answers.
    for conv, k in zip(agents.calls[1], range(12), strict=True):
        turn = conv[2]["content"]
        assert f"SUMMARY-{k}" in turn
        assert "Agent " not in turn
        assert ARITHMETIC.first_prompt(items[k // 3]) in turn
    for conv, k in zip(agents.calls[2], range(12, 24), strict=True):
        assert f"SUMMARY-{k}" in conv[4]["content"]
    assert records[1]["summaries"] == [
        ["SUMMARY-3", "SUMMARY-4", "SUMMARY-5"],
        ["SUMMARY-15", "SUMMARY-16", "SUMMARY-17"],
    ]


def test_summarizer_defaults_to_the_first_agents_model(fake_chat_model, items) -> None:
    model = fake_chat_model()
    DebateEngine(ARITHMETIC, [model] * 2, _setup("debate", 2, 2, summarize=True)).run(items)
    # round 1, summaries before round 2, round 2
    assert model.batch_sizes == [8, 8, 8]
    assert all(len(c) == 1 for c in model.calls[1])


def test_heterogeneous_agents_one_call_per_model_per_round(fake_chat_model, items) -> None:
    m1 = fake_chat_model(lambda c: "m1 says 3", spec="fake:one")
    m2 = fake_chat_model(lambda c: "m2 says 4", spec="fake:two")
    records = _stored(DebateEngine(ARITHMETIC, [m1, m2, m1], _setup("debate", 3, 2)).run(items))
    assert m1.batch_sizes == [4 * 2, 4 * 2]
    assert m2.batch_sizes == [4, 4]
    # Each model continues only its own agents' histories.
    for conv in m1.calls[1]:
        assert conv[1]["content"] == "m1 says 3"
        assert "m2 says 4" in conv[2]["content"]
    for conv in m2.calls[1]:
        assert conv[1]["content"] == "m2 says 4"
        assert "m2 says 4" not in conv[2]["content"]
    for rec in records:
        assert [a["model"] for a in rec["agents"]] == ["fake:one", "fake:two", "fake:one"]
        assert _grade(rec).answers == [[3, 4, 3], [3, 4, 3]]
        texts = [
            [m["content"] for m in a["messages"] if m["role"] == "assistant"] for a in rec["agents"]
        ]
        assert texts == [["m1 says 3"] * 2, ["m2 says 4"] * 2, ["m1 says 3"] * 2]


def test_system_message_comes_first_once(fake_chat_model, items) -> None:
    model = fake_chat_model()
    setup = _setup("debate", 2, 2, system="Be careful.")
    records = _stored(DebateEngine(ARITHMETIC, [model] * 2, setup).run(items))
    for call in model.calls:
        for conv in call:
            assert conv[0] == {"role": "system", "content": "Be careful."}
            assert [m["role"] for m in conv].count("system") == 1
    assert [m["role"] for m in records[0]["agents"][0]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    # Without --sys there is no system message at all.
    plain = fake_chat_model()
    DebateEngine(ARITHMETIC, [plain] * 2, _setup("debate", 2, 2)).run(items)
    assert all(conv[0]["role"] == "user" for call in plain.calls for conv in call)


# -- records ---------------------------------------------------------------------------------


def _agent_counter():
    """Return conversation -> agent index in a round-2 batch of 3 agents (None in round 1).

    Other agents are quoted anonymously, so the index comes from the batch order: the engine
    sends (item 0, agent 0), (item 0, agent 1), ... and the fake answers them in order.
    """
    seen = [0]

    def index(conversation) -> int | None:
        if len(conversation) < 3:
            return None
        seen[0] += 1
        return (seen[0] - 1) % 3

    return index


def test_records_answers_unparseable_majority_and_correctness(fake_chat_model, items) -> None:
    _agent_index = _agent_counter()

    def reply(conversation):
        value = _true_value(conversation)
        agent = _agent_index(conversation)
        if agent is None:
            return f"So the result is {value + 1}."  # round 1: all agents wrong, same answer
        if agent == 2:
            return "I am not sure any more."  # round 2: agent 3 gives no number
        return f"Checking again: {value}"  # round 2: agents 1 and 2 fix it

    model = fake_chat_model(reply)
    records = _stored(DebateEngine(ARITHMETIC, [model] * 3, _setup("debate", 3, 2)).run(items))
    for item, rec in zip(items, records, strict=True):
        t = item["target"]
        assert rec["id"] == item["id"]
        assert rec["task"] == "arithmetic" and rec["method"] == "debate"
        assert rec["question"] == item["question"] and rec["target"] == t
        graded = _grade(rec)
        assert graded.answers == [[t + 1] * 3, [t, t, None]]
        assert _unparseable(rec) == [0, 1]
        assert graded.finals[-1] == t
        assert graded.by_round == [False, True]
        assert graded.correct is True
        assert rec["errors"] == 0
        assert rec["finish_reasons"] == [["stop"] * 3, ["stop"] * 3]
        assert rec["usage"]["completion_tokens"] > 0
        assert rec["usage"]["prompt_tokens"] > 0
        assert "summaries" not in rec
        for agent in rec["agents"]:
            assert agent["model"] == "fake"
            assert [m["role"] for m in agent["messages"]] == ["user", "assistant"] * 2


def test_all_unparseable_final_is_none_and_wrong(fake_chat_model, items) -> None:
    model = fake_chat_model(lambda c: "no idea")
    records = _stored(DebateEngine(ARITHMETIC, [model] * 3, _setup("debate", 3, 2)).run(items))
    for rec in records:
        assert _grade(rec).finals[-1] is None
        assert _grade(rec).by_round == [False, False]
        assert _unparseable(rec) == [3, 3]


def test_error_completion_is_counted_and_never_correct(fake_chat_model, items) -> None:
    def reply(conversation):
        value = _true_value(conversation)
        if len(conversation) == 1:
            return f"It is {value}"
        # Round 2: every agent's backend fails. The text even holds the right number; an
        # errored completion must still not be read as an answer.
        return Completion(text=str(value), finish_reason="error", error="HTTP 500")

    model = fake_chat_model(reply)
    records = _stored(DebateEngine(ARITHMETIC, [model] * 3, _setup("debate", 3, 2)).run(items))
    for rec in records:
        assert rec["errors"] == 3
        assert _grade(rec).answers[0] == [rec["target"]] * 3
        assert _grade(rec).answers[1] == [None, None, None]
        assert rec["finish_reasons"][1] == ["error"] * 3
        assert _unparseable(rec) == [0, 3]
        assert _grade(rec).by_round == [True, False]
        assert _grade(rec).correct is False


def test_one_error_among_agents_leaves_the_majority_to_the_others(fake_chat_model, items) -> None:
    calls = itertools.count()

    def reply(conversation):
        if next(calls) == 0:
            return Completion(text="", finish_reason="error", error="timeout")
        return f"= {_true_value(conversation)}"

    model = fake_chat_model(reply)
    rec = _stored(DebateEngine(ARITHMETIC, [model] * 3, _setup("majority", 3)).run(items[:1]))[0]
    assert rec["errors"] == 1
    assert _grade(rec).answers == [[None, rec["target"], rec["target"]]]
    assert _grade(rec).correct is True


# -- biographies -----------------------------------------------------------------------------

PEOPLE = [
    {"id": "Ada Lovelace", "person": "Ada Lovelace", "facts": ["born 1815", "a poet"]},
    {"id": "Alan Turing", "person": "Alan Turing", "facts": ["born 1912", "a runner", "tall"]},
]
_FACT = re.compile(r"Here is one fact about [^:]+: (.*)\n")


def test_biography_debate_with_a_fake_judge(fake_chat_model) -> None:
    agents = fake_chat_model(lambda c: "Here you go:\n- born 1815\n- born 1912\n- a runner")

    def judge_reply(conversation):
        fact = _FACT.search(conversation[0]["content"]).group(1)
        return {"born 1815": "Yes", "born 1912": "yes.", "a runner": "uncertain"}.get(fact, "No")

    judge = fake_chat_model(judge_reply, spec="judge")
    with pytest.raises(ValueError, match="judge"):
        DebateEngine(BIOGRAPHY, [agents] * 2, _setup("debate", 2, 2))
    setup = _setup("debate", 2, 2)
    records = _stored(DebateEngine(BIOGRAPHY, [agents] * 2, setup, judge=judge).run(PEOPLE))

    assert agents.batch_sizes == [4, 4]
    assert judge.batch_sizes == [2 * 2 + 2 * 3]  # all (item, agent, fact) in one call
    assert judge.params == [setup.judge_params]
    ada, alan = records
    assert ada["question"] == "Ada Lovelace"
    assert ada["target"] == ["born 1815", "a poet"]
    assert (
        DebateRecord.from_json(ada).last_replies()
        == ["Here you go:\n- born 1815\n- born 1912\n- a runner"] * 2
    )
    assert ada["judge"]["model"] == "judge"
    assert ada["judge"]["verdicts"] == [["yes", "no"], ["yes", "no"]]
    assert _bio(ada)[1] == {
        "yes": 2,
        "no": 2,
        "uncertain": 0,
        "unparseable": 0,
        "declined": 0,
    }
    assert _bio(ada)[0] == pytest.approx(0.5)
    assert _bio(alan)[1] == {
        "yes": 2,
        "no": 2,
        "uncertain": 2,
        "unparseable": 0,
        "declined": 0,
    }
    assert _bio(alan)[0] == pytest.approx(0.5)
    assert "counts" not in ada["judge"] and "score" not in ada


def test_biography_empty_reply_gets_no_without_asking_the_judge(fake_chat_model) -> None:
    agents = fake_chat_model(lambda c: "   ")
    judge = fake_chat_model(lambda c: "yes")
    records = _stored(DebateEngine(BIOGRAPHY, [agents], _setup("single"), judge=judge).run(PEOPLE))
    assert judge.calls == []
    assert [_bio(r)[0] for r in records] == [0.0, 0.0]
    assert _bio(records[1])[1]["no"] == 3
    assert BIOGRAPHY.parse(DebateRecord.from_json(records[0]).last_replies()[0]) is None


def test_biography_declining_reply_stops_the_debate_and_is_not_scored(fake_chat_model) -> None:
    def reply(conversation):
        if "Ada Lovelace" in conversation[0]["content"]:
            return "I don't know this person."  # one line that declines
        return "- born 1815\n- a poet"

    agents = fake_chat_model(reply)
    judge = fake_chat_model(lambda c: "yes", spec="judge")
    records = _stored(
        DebateEngine(BIOGRAPHY, [agents] * 2, _setup("debate", 2, 3), judge=judge).run(PEOPLE)
    )
    ada, alan = records
    # Ada stops after round 1; Alan debates all three rounds.
    assert agents.batch_sizes == [4, 2, 2]
    assert len(ada["finish_reasons"]) == 1 and len(alan["finish_reasons"]) == 3
    assert _bio(ada)[1]["declined"] == 2
    assert ada["judge"]["verdicts"] == [] and _bio(ada)[0] is None
    assert _bio(alan)[1]["declined"] == 0 and _bio(alan)[0] == 1.0
    # Only Alan's biographies went to the judge.
    assert judge.batch_sizes == [2 * len(PEOPLE[1]["facts"])]


def test_biography_last_round_has_the_examine_turn(fake_chat_model) -> None:
    agents = fake_chat_model(lambda c: "- born 1815")
    judge = fake_chat_model(lambda c: "yes", spec="judge")
    DebateEngine(BIOGRAPHY, [agents] * 2, _setup("debate", 2, 3), judge=judge).run(PEOPLE)
    assert BIOGRAPHY.last_round_hint
    round2, round3 = agents.calls[1], agents.calls[2]
    assert all(BIOGRAPHY.last_round_hint not in conv[-1]["content"] for conv in round2)
    assert all(conv[-1]["content"].endswith(BIOGRAPHY.last_round_hint) for conv in round3)
