from collections import Counter

import pytest

from chorus_tripost import tasks


@pytest.mark.parametrize(
    ("task", "counts"),
    [
        ("multistep_arithmetic", {"seen": 120, "unseen": 240}),
        ("word_sort", {"seen": 127, "unseen": 252}),
    ],
)
def test_seen_unseen_counts_match_the_paper(task, counts):
    items = tasks.load_items(task, "test")
    assert Counter(tasks.seen_unseen(it) for it in items) == counts


def test_train_split_sizes():
    assert len(tasks.load_items("multistep_arithmetic", "train")) == 600
    assert len(tasks.load_items("word_sort", "train")) == 1501


def test_arithmetic_rationales_reproduce_the_local_data():
    items = tasks.load_items("multistep_arithmetic", "train") + tasks.load_items(
        "multistep_arithmetic", "test"
    )
    same = 0
    for it in items:
        steps, answer = tasks.arithmetic_rationale(it["question"])
        assert str(answer) == it["answer"], it["id"]
        same += tasks.format_rationale(steps, f"So the answer is {answer}.") == it["rationale"]
    # One original rationale repeats an intermediate expression; ours does not.
    assert same == len(items) - 1


def test_word_sort_rationales_reproduce_the_local_data_up_to_labels():
    import re

    def strip(text):
        return [re.sub(r"^\([\d.]+\) ", "", line) for line in text.splitlines()]

    items = tasks.load_items("word_sort", "train") + tasks.load_items("word_sort", "test")
    for it in items:
        steps, ordered = tasks.word_sort_rationale(tasks.word_sort_words(it["question"]))
        text = tasks.format_labeled(steps, "So the answer is: " + " ".join(ordered) + ".")
        assert strip(text) == strip(it["rationale"]), it["id"]
    assert len(items) == 1880


def test_generated_arithmetic_is_right_and_deterministic():
    from chorus_shared.grading import safe_eval_arithmetic

    a = tasks.generate_arithmetic(20, length=4, depth=3, seed=7)
    assert a == tasks.generate_arithmetic(20, length=4, depth=3, seed=7)
    for it in a:
        expr = it["question"].removeprefix("Q:").strip().removesuffix("=")
        assert safe_eval_arithmetic(expr) == int(it["answer"])
        assert it["rationale"].count("Let's calculate") == 4


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task"):
        tasks.load_items("chess", "test")
