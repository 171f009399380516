import re

import pytest

from chorus_selfee.enforce import ChatContinuer, HFContinuer, enforce_generate
from chorus_shared.models import load_chat_model
from chorus_shared.testing import FakeOpenAIServer


class SelfeeLike:
    """Acts like a trained SelFee model: given a prefix, writes the next answer/revision and a
    feedback that always says no revision is needed (stopping at the stop string)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def continue_batch(self, prefixes, max_new_tokens, stop, seed):
        self.calls.append(len(prefixes))
        out = []
        for p in prefixes:
            body = p.split("### Answer:\n", 1)[1]
            k = len(re.findall(r"### Feedback \d+:", body)) + 1
            new = "" if body.endswith(":\n") and "### Revision" in body[-20:] else "draft"
            new = (f"v{k}" if new == "" else "answer") + f"\n\n### Feedback {k}:\nfine. "
            out.append((new, 5, "stop"))
        return out


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_verdict_replaced_exactly_until_k_revisions(k: int) -> None:
    fake = SelfeeLike()
    res = enforce_generate(fake, [("q1", ""), ("q2", "")], max_num_revision=k, max_new_tokens=100)
    for r in res:
        assert r.forced == k
        assert len(r.chain.revisions) == k
        assert len(r.chain.feedbacks) == k + 1
        assert r.chain.stopped and r.finish == "stop"
        assert r.text.count("Revision is needed.") == k
        assert r.text.endswith("Revision is not needed.")
        assert r.chain.final_answer == (f"v{k + 1}" if k else "answer")
    assert fake.calls == [2] * (k + 1)  # one batched call per round for both rows


class NoRevisionHeaders:
    """Writes feedback sections but never a revision body: its chain never parses any
    revision, so only the forced count can end the enforcing."""

    def continue_batch(self, prefixes, max_new_tokens, stop, seed):
        return [("\n\n### Feedback 9:\nbad. ", 5, "stop") for _ in prefixes]


def test_a_chain_that_never_parses_is_forced_at_most_k_times() -> None:
    res = enforce_generate(NoRevisionHeaders(), [("q", "")], max_num_revision=2, max_new_tokens=99)
    assert res[0].forced == 2 and res[0].rounds == 3
    assert res[0].text.endswith("Revision is not needed.")  # never a dangling header


def test_budget_bounds_a_model_that_never_stops() -> None:
    fake = SelfeeLike()
    res = enforce_generate(fake, [("q", "")], max_num_revision=10, max_new_tokens=12)
    assert res[0].tokens <= 15 and len(fake.calls) <= 3


def test_openai_backend_stop_and_continue() -> None:
    def responder(body: dict) -> str:
        prefix = body["messages"][-1]["content"]
        body_text = prefix.split("### Answer:\n", 1)[1]
        k = body_text.count("### Feedback") + 1
        return f"text {k}\n\n### Feedback {k}:\nok. Revision is not needed. trailing"

    with FakeOpenAIServer(responder) as server:
        model = load_chat_model(f"openai:fake-model@{server.base_url}")
        res = enforce_generate(
            ChatContinuer(model),
            [("a", ""), ("b", ""), ("c", "")],
            max_num_revision=2,
            max_new_tokens=200,
        )
        assert all(r.forced == 2 and len(r.chain.revisions) == 2 for r in res)
        assert all(r.chain.final_answer == "text 3" for r in res)
        assert all("Revision is not needed" in str(q["stop"]) for q in server.requests)
        assert len(server.requests) == 9  # 3 items x 3 rounds


def test_hf_backend_batched_rounds_are_bounded(tiny_model_dir) -> None:
    chat = load_chat_model(f"hf:{tiny_model_dir}")
    cont = HFContinuer(chat.model, chat.tokenizer)
    res = enforce_generate(
        cont, [("q one", ""), ("a longer question two", "")], max_num_revision=2, max_new_tokens=8
    )
    # A random model writes no verdict: one batched generate call, budget-bounded.
    assert cont.calls == 1
    assert all(0 < r.tokens <= 8 and r.forced == 0 for r in res)


def test_hf_stop_string_ends_rows_independently(tiny_model_dir) -> None:
    chat = load_chat_model(f"hf:{tiny_model_dir}")
    cont = HFContinuer(chat.model, chat.tokenizer)
    free = cont.continue_batch(["The answer", "Agent 2"], [6, 6], [], None)
    # Stop at the first generated piece of row 0's text: row 0 stops, row 1 is unaffected.
    stop = free[0][0][:3]
    assert stop.strip(), "the seeded tiny model should write visible text"
    out = cont.continue_batch(["The answer", "Agent 2"], [6, 6], [stop], None)
    assert out[0][2] == "stop" and stop not in out[0][0]
    assert out[1][0] == free[1][0] or stop in free[1][0]
