import re

import pytest

from chorus_tripost import tasks
from chorus_tripost.improver import LLMImprover, improve
from chorus_tripost.verifier import LLMVerifier, verify

ARITH = {
    "task": "multistep_arithmetic",
    "question": "Q: ((7 - -1 + -1 + -4) - (-7 + 7 * 3 * -9)) = ",
}
SORT = {
    "task": "word_sort",
    "question": (
        "Q: Sort the following words alphabetically:\n"
        "List: sioux fortescue purloin percept helmsman"
    ),
}


def truth(item):
    if item["task"] == "multistep_arithmetic":
        steps, answer = tasks.arithmetic_rationale(item["question"])
        return tasks.format_rationale(steps, f"So the answer is {answer}.")
    steps, ordered = tasks.word_sort_rationale(tasks.word_sort_words(item["question"]))
    return tasks.format_labeled(steps, "So the answer is: " + " ".join(ordered) + ".")


@pytest.mark.parametrize("task", tasks.SCRIPTED_TASKS)
def test_every_ground_truth_rationale_of_the_local_data_passes(task):
    items = [it for split in tasks.SPLITS for it in tasks.load_items(task, split)]
    passed = sum(verify(it, it["rationale"]).correct for it in items)
    assert passed == len(items) == {"multistep_arithmetic": 960, "word_sort": 852}[task]


# (item, old, new, index of the step that must be blamed, words the part must contain)
PLANTED = [
    (ARITH, '"(A - B)"', '"(A + B)"', 0, "(A + B)"),  # decomposition: shape
    (ARITH, "B = (-7 + 7 * 3 * -9).", "B = (-7 + 7 * 3 * 9).", 0, "B = (-7 + 7 * 3 * 9)"),
    (ARITH, "((8 + -1) + -4)", "((9 + -1) + -4)", 1, "= ((9 + -1) + -4)"),  # intermediate calc
    (ARITH, "(-7 + -189) = -196", "(-7 + -189) = -186", 2, "(-7 + -189) = -186"),  # result
    (ARITH, "(A - B) = (3 - -196)", "(A - B) = (3 - 196)", 3, "(3 - 196)"),  # substitution
    (ARITH, "(3 - -196) = 199", "(3 - -196) = 189", 3, "= 189"),  # final equation
    (ARITH, "answer is 199", "answer is 198", 4, "198"),  # final response
    (SORT, '"sioux"="s" (19)', '"sioux"="t" (19)', 0, '"sioux"="t"'),  # wrong letter
    (SORT, '"helmsman"="h" (8)', '"helmsman"="h" (7)', 0, '"helmsman"="h" (7)'),  # wrong index
    (SORT, '(8) "helmsman" < (16)', '(8) "helmsman" < (15)', 1, "We now have"),  # order
    (SORT, '"percept"="e" (5).', '"percept"="e" (6).', 2, '"percept"="e" (6)'),  # subpart index
    (
        SORT,
        '(3.2) Hence, we have "percept" < "purloin"',
        '(3.2) Hence, we have "purloin" < "percept"',
        4,
        '"purloin" < "percept"',
    ),
    (
        SORT,
        '(4) Hence, we have "fortescue" < "helmsman"',
        '(4) Hence, we have "helmsman" < "fortescue"',
        5,
        "Hence",
    ),
    (
        SORT,
        "answer is: fortescue helmsman",
        "answer is: helmsman fortescue",
        6,
        "helmsman fortescue",
    ),
]


@pytest.mark.parametrize(("item", "old", "new", "index", "part"), PLANTED)
def test_planted_error_found_at_its_step_and_repaired(item, old, new, index, part):
    good = truth(item)
    assert verify(item, good).correct
    assert old in good
    bad = good.replace(old, new, 1)
    verdict = verify(item, bad)
    assert not verdict.correct
    assert verdict.error_index == index, verdict.feedback
    assert part in verdict.part, verdict.feedback
    assert "is incorrect. This is because" in verdict.feedback
    if index > 0:
        assert verdict.feedback.startswith("Step (1)")
    fixed = improve(item, bad, verdict)
    assert verify(item, fixed).correct
    # Repair from the correct prefix: the steps before the error are kept word for word.
    assert fixed.splitlines()[:index] == bad.splitlines()[:index]


def test_all_correct_feedback_format():
    v = verify(ARITH, truth(ARITH))
    assert v.feedback == "Step (1) to step (4) are correct. The final response is also correct."


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I think it is 5.",
        "(1) blah\n(Final response) So the answer is 199.",
        "(1) x\nfree text",
    ],
)
def test_unparseable_rationales_get_a_verdict_not_a_crash(text):
    for item in (ARITH, SORT):
        v = verify(item, text)
        assert not v.correct and not v.parsed and v.feedback


def test_truncated_rationale_is_wrong_and_repairable():
    cut = "\n".join(truth(ARITH).splitlines()[:2])
    v = verify(ARITH, cut)
    assert not v.correct and v.error_index == 2
    assert verify(ARITH, improve(ARITH, cut, v)).correct


def test_generated_items_verify():
    for it in tasks.generate_arithmetic(30, length=5, depth=4, seed=1):
        assert verify(it, it["rationale"]).correct


def test_llm_verifier_and_improver_through_openai_client():
    from chorus_shared.models.openai_api import OpenAIChatModel
    from chorus_shared.testing import FakeOpenAIServer

    def responder(body):
        # Play a strong helper: verify / repair with the script, from the prompt text alone.
        last = body["messages"][-1]["content"]
        question, rest = last.split("\nAnswer: Let's think step by step.\n", 1)
        item = {"task": "multistep_arithmetic", "question": question}
        if "Feedback:" in rest:
            attempt = rest.split("\nFeedback:")[0]
            return improve(item, attempt, verify(item, attempt))
        return verify(item, rest).feedback

    bad = truth(ARITH).replace("= -196.", "= -190.")
    with FakeOpenAIServer(responder) as server:
        model = OpenAIChatModel("fake-model", base_url=server.base_url)
        verdicts = LLMVerifier(model, demos=[(ARITH, bad, "demo feedback")])(
            [ARITH, ARITH], [truth(ARITH), bad]
        )
        assert [v.correct for v in verdicts] == [True, False]
        assert re.search(r"In step \(3\)", verdicts[1].feedback)
        improved = LLMImprover(model)([ARITH], [bad], [verdicts[1]])
        assert verify(ARITH, improved[0]).correct
        assert len(server.requests) == 3
        assert server.requests[0]["messages"][1]["content"].endswith(bad)
