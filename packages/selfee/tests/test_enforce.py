"""Revision-enforce as the original's: only its six phrases trigger, nothing invented."""

from __future__ import annotations

import re

import pytest

from chorus_selfee.chain import NOT_NEEDED_PHRASES, build_prompt, final_answer
from chorus_selfee.enforce import (
    CompletionContinuer,
    HFContinuer,
    Piece,
    enforce_generate,
    enforce_prompts,
    load_raw_lm,
)
from chorus_shared.testing import FakeOpenAIServer


class SelfeeLike:
    """Acts like a trained SelFee model without stop-string support: given a prefix, writes the
    next text (answer or revision body), a feedback that says no revision is needed, ".", EOS.
    After "Revision is needed" it writes "." and the next revision header itself."""

    def __init__(self, phrase: str = "Revision is not needed") -> None:
        self.phrase = phrase
        self.calls: list[int] = []

    def continue_batch(self, prefixes, max_new_tokens, stop, seed):
        self.calls.append(len(prefixes))
        out = []
        for p in prefixes:
            body = p.split("### Answer:\n", 1)[1]
            k = body.count("### Feedback") + 1
            text = "" if body else "answer"
            if body.endswith("needed"):  # forced: the model goes on to write the revision
                text = f".\n\n### Revision {k - 1}:\nv{k - 1}"
            text += f"\n\n### Feedback {k}:\nfine. {self.phrase}."
            out.append(Piece(text, 5, "eos"))
        return out


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_phrase_replaced_until_k_revisions(k: int) -> None:
    fake = SelfeeLike()
    res = enforce_generate(fake, [("q1", ""), ("q2", "")], max_num_revision=k, max_new_tokens=100)
    for r in res:
        assert r.forced == k and r.finish == "stop"
        assert r.text.count("Revision is needed") == k
        assert r.text.count("Revision is not needed") == 1  # the model's own, kept as written
        assert final_answer(r.text).revisions == k
        assert final_answer(r.text).text == (f"v{k}" if k else "answer")
    assert fake.calls == [2] * (k + 1)  # one batched call per round for both rows


@pytest.mark.parametrize("phrase", NOT_NEEDED_PHRASES)
def test_each_of_the_six_phrases_triggers(phrase: str) -> None:
    res = enforce_generate(SelfeeLike(phrase), [("q", "")], max_num_revision=1, max_new_tokens=99)
    assert res[0].forced == 1 and final_answer(res[0].text).revisions == 1
    needed = "Revision is needed" if phrase[0].isupper() else "revision is needed"
    assert needed in res[0].text


class NoVerdict:
    """Ends its feedback with EOS and no verdict (as 1 of the released K = 0 answers does)."""

    def continue_batch(self, prefixes, max_new_tokens, stop, seed):
        return [
            Piece("ans\n\n### Feedback 1:\nMore details could help.", 7, "eos") for _ in prefixes
        ]


@pytest.mark.parametrize("k", [0, 2])
def test_no_phrase_no_forcing_and_no_invented_verdict(k: int) -> None:
    res = enforce_generate(NoVerdict(), [("q", "")], max_num_revision=k, max_new_tokens=99)
    assert res[0].forced == 0 and res[0].rounds == 1
    assert res[0].text == "ans\n\n### Feedback 1:\nMore details could help."  # nothing added


def test_budget_bounds_a_model_that_never_stops() -> None:
    fake = SelfeeLike()
    res = enforce_generate(fake, [("q", "")], max_num_revision=10, max_new_tokens=12)
    assert res[0].tokens <= 15 and len(fake.calls) <= 3 and res[0].finish == "length"


def test_errors_are_reported_per_row() -> None:
    class Failing:
        def continue_batch(self, prefixes, max_new_tokens, stop, seed):
            return [Piece("", 0, "error", "HTTP 400")] + [Piece("ok", 1, "eos")] * (
                len(prefixes) - 1
            )

    res = enforce_generate(Failing(), [("a", ""), ("b", "")], max_num_revision=0)
    assert (res[0].finish, res[0].error) == ("error", "HTTP 400") and res[1].text == "ok"


def test_serve_cap_ends_after_max_revisions() -> None:
    res = enforce_prompts(
        SelfeeLike(), [build_prompt("q")], max_num_revision=3, max_new_tokens=999, max_revisions=2
    )
    assert res[0].capped and res[0].text.count("### Revision") == 2
    assert res[0].text.endswith("v2")


def test_openai_completions_raw_prompt_stop_and_continue() -> None:
    def responder(body: dict) -> str:
        assert "messages" not in body  # a raw completion, never a chat turn
        body_text = body["prompt"].split("### Answer:\n", 1)[1]
        k = body_text.count("### Feedback") + 1
        head = f".\n\n### Revision {k - 1}:\ntext {k}" if body_text else "text 1"
        return f"{head}\n\n### Feedback {k}:\nok. Revision is not needed. trailing"

    with FakeOpenAIServer(responder) as server:
        cont = CompletionContinuer("fake-model", server.base_url)
        res = enforce_generate(cont, [("a", ""), ("b", "")], max_num_revision=2, max_new_tokens=200)
        assert all(r.forced == 2 and final_answer(r.text).text == "text 3" for r in res)
        # Requests run concurrently: their order is not fixed.
        assert {r["prompt"] for r in server.requests[:2]} == {build_prompt("a"), build_prompt("b")}
        assert len(server.requests) == 6  # 2 items x 3 rounds


def test_hf_raw_prompt_model_without_chat_template(tmp_path, tiny_model_dir) -> None:
    import shutil

    plain = tmp_path / "plain-lm"
    shutil.copytree(tiny_model_dir, plain)
    for f in plain.glob("*"):
        if f.name == "chat_template.jinja":
            f.unlink()
        elif f.name == "tokenizer_config.json":
            f.write_text(re.sub(r',\s*"chat_template":\s*"(?:[^"\\]|\\.)*"', "", f.read_text()))
    model, tok = load_raw_lm(f"hf:{plain}")
    assert getattr(tok, "chat_template", None) is None  # a plain LM, as a SelFee checkpoint
    cont = HFContinuer(model, tok)
    res = enforce_generate(
        cont, [("q one", ""), ("a longer question two", "")], max_num_revision=2, max_new_tokens=8
    )
    assert cont.calls == 1 and all(0 < r.tokens <= 8 and r.forced == 0 for r in res)


def test_hf_stop_string_ends_rows_independently(tiny_model_dir) -> None:
    model, tok = load_raw_lm(f"hf:{tiny_model_dir}")
    cont = HFContinuer(model, tok)
    free = cont.continue_batch(["The answer", "Agent 2"], [6, 6], [], None)
    stop = free[0].text[:3]
    assert stop.strip(), "the seeded tiny model should write visible text"
    out = cont.continue_batch(["The answer", "Agent 2"], [6, 6], [stop], None)
    assert out[0].finish == "stop_string" and stop in out[0].text  # kept: the model wrote it
    assert out[1].text == free[1].text or stop in free[1].text
