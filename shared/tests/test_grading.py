"""Tests for chorus_shared.grading: extraction, numeric equality, votes, statistics, arithmetic."""

from __future__ import annotations

import math
import operator
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chorus_shared.grading import (
    extract_boxed,
    extract_choice,
    extract_gsm_answer,
    extract_last_number,
    format_mean_se,
    gsm_ground_truth,
    majority_vote,
    mean_stderr,
    numbers_equal,
    parse_number,
    safe_eval_arithmetic,
)

# ----------------------------------------------------------------------------- parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42.0),
        ("1,234.5", 1234.5),
        ("1,234,567", 1234567.0),
        ("-3", -3.0),
        ("+4", 4.0),
        ("\u22123", -3.0),  # Unicode minus sign
        ("$18", 18.0),
        ("-$18", -18.0),
        ("$-18", -18.0),
        ("50%", 50.0),
        ("7.", 7.0),
        ("1,234.", 1234.0),
        (".5", 0.5),
        ("-.5", -0.5),
        ("3.", 3.0),
        ("  12  ", 12.0),
        ("2.5e3", 2500.0),
        ("0", 0.0),
    ],
)
def test_parse_number_accepts(text: str, expected: float) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", ".", "-", "$", "abc", "1,23", "12,34,567", "1 2", "3-4", "-$-3", "five"]
)
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


# ----------------------------------------------------------------------------- last number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I have 1,234 apples, 5 pears", 5.0),
        ("costs $1,234.", 1234.0),
        ("-7", -7.0),
        ("The range is 3-4", 4.0),
        ("x-4", 4.0),
        ("so the answer is (-7)", -7.0),
        ("temperature = \u22123.5 degrees", -3.5),
        ("The answer is 42.\n", 42.0),
        ("so...18", 18.0),
        ("she paid $1,450,000 in total", 1450000.0),
        ("1,2345", 2345.0),  # badly grouped: not 1,234 then 5
        ("about 1e-3 of it", 0.001),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_last_number(text: str, expected: float | None) -> None:
    assert extract_last_number(text) == expected


def _with_separators(n: int) -> str:
    return f"{n:,}"


@given(
    n=st.integers(min_value=-(10**15), max_value=10**15),
    minus=st.sampled_from(["-", "\u2212"]),
    dollar=st.booleans(),
    before=st.sampled_from(["", "So the answer is ", "Total: ", "We get x = ", "(", "I think "]),
    after=st.sampled_from(["", ".", " dollars.", ")", " apples in all!", "\n"]),
)
def test_extract_last_number_round_trips_signed_integers(
    n: int, minus: str, dollar: bool, before: str, after: str
) -> None:
    token = ("$" if dollar else "") + _with_separators(abs(n))
    if n < 0:
        token = minus + token
    text = f"Step 1: 3 + 4 = 7. {before}{token}{after}"
    assert extract_last_number(text) == float(n)
    assert parse_number(token) == float(n)


@given(
    whole=st.integers(min_value=0, max_value=10**9),
    frac=st.text(alphabet="0123456789", min_size=1, max_size=6),
    negative=st.booleans(),
)
def test_extract_last_number_round_trips_decimals(whole: int, frac: str, negative: bool) -> None:
    sign = "-" if negative else ""
    token = f"{sign}{whole:,}.{frac}"
    expected = float(f"{sign}{whole}.{frac}")
    assert extract_last_number(f"the mean is {token} units") == expected
    assert parse_number(token) == expected


# ----------------------------------------------------------------------------- boxed


def test_extract_boxed_basic_and_nested() -> None:
    assert extract_boxed(r"so \boxed{42}.") == "42"
    assert extract_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert extract_boxed(r"first \boxed{1} then \boxed{2}") == "2"
    assert extract_boxed(r"\boxed{}") == ""


def test_extract_boxed_none_when_absent_or_unbalanced() -> None:
    assert extract_boxed("no box here") is None
    assert extract_boxed(r"\boxed{\frac{1}{2}") is None
    # The last box is the answer; an unclosed last box is no answer, not the earlier one.
    assert extract_boxed(r"\boxed{1} and \boxed{2") is None


_plain_text = st.text(alphabet=st.characters(blacklist_characters="{}\\"), max_size=20)
_balanced = st.recursive(
    _plain_text,
    lambda inner: st.one_of(
        inner.map(lambda s: "{" + s + "}"),
        st.lists(inner, min_size=2, max_size=3).map("".join),
    ),
    max_leaves=8,
)


@given(content=_balanced, earlier=_balanced, before=_plain_text, after=_plain_text)
def test_extract_boxed_round_trips_balanced_content(
    content: str, earlier: str, before: str, after: str
) -> None:
    text = f"{before}\\boxed{{{earlier}}} {before}\\boxed{{{content}}}{after}"
    assert extract_boxed(text) == content


# ----------------------------------------------------------------------------- GSM answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The total is 5 + 13 = 18, so \boxed{18}.", 18.0),
        (r"\boxed{1,234} and then 7 more words 9", 1234.0),
        (r"\boxed{\$18}", 18.0),
        (r"\boxed{18 \text{ dollars}}", 18.0),
        (r"\boxed{-\frac{1}{4}}", -0.25),
        (r"\boxed{1{,}234}", 1234.0),
        (r"\boxed{-10}", -10.0),
        (r"\boxed{x} but I computed 7 and then 8", 8.0),  # box not numeric: last number
        ("no box, the answer is 1,600.", 1600.0),
        ("I am not sure.", None),
    ],
)
def test_extract_gsm_answer(text: str, expected: float | None) -> None:
    assert extract_gsm_answer(text) == expected


@given(n=st.integers(min_value=-(10**9), max_value=10**9), noise=st.integers(0, 999))
def test_extract_gsm_answer_prefers_the_box(n: int, noise: int) -> None:
    text = f"We try {noise} first. Final: \\boxed{{{n:,}}} (checked against {noise})."
    assert extract_gsm_answer(text) == float(n)


# ----------------------------------------------------------------------------- choices


def test_extract_choice() -> None:
    assert extract_choice("I think (A) but on reflection the answer is (C).") == "C"
    assert extract_choice("The answer is (a).") is None  # lowercase is prose, not an answer
    assert extract_choice("The answer is (E).") is None
    assert extract_choice("The answer is (E).", choices="ABCDE") == "E"
    assert extract_choice("The answer is C.") is None
    assert extract_choice("") is None
    with pytest.raises(ValueError):
        extract_choice("(A)", choices="")


# ----------------------------------------------------------------------------- equality


def test_numbers_equal() -> None:
    assert numbers_equal(18.0, 18)
    assert numbers_equal(0.1 + 0.2, 0.3)
    assert numbers_equal(1e9, 1e9 + 1)  # relative tolerance 1e-6
    assert not numbers_equal(18.0, 19.0)
    assert not numbers_equal(0.0, 1e-3)


def test_unparseable_answer_is_never_right() -> None:
    """Original defect: an answer that could not be parsed was counted as correct."""
    assert not numbers_equal(None, None)
    assert not numbers_equal(None, 18.0)
    assert not numbers_equal(18.0, None)
    for reply in ["I don't know.", "", "The answer is \\boxed{}.", "(seventeen)"]:
        assert not numbers_equal(extract_gsm_answer(reply), gsm_ground_truth("#### 0"))
        assert extract_choice(reply) is None


# ----------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("He sells 9 * 2 = <<9*2=18>>18.\n#### 18", 18.0),
        ("She saves 1,600 dollars.\n#### 1,600", 1600.0),  # original defect: commas mangled
        ("The loss is 10.\n#### -10", -10.0),  # original defect: minus signs dropped
        ("#### 1,450,000", 1450000.0),
        ("#### 0.5", 0.5),
        ("first #### 3 then the real one\n#### 4", 4.0),
        ("####7", 7.0),
    ],
)
def test_gsm_ground_truth(field: str, expected: float) -> None:
    assert gsm_ground_truth(field) == expected


@pytest.mark.parametrize("field", ["no marker at all: 42", "#### ", "#### forty-two"])
def test_gsm_ground_truth_raises_naming_the_text(field: str) -> None:
    with pytest.raises(ValueError, match="GSM8K") as info:
        gsm_ground_truth(field)
    assert repr(field) in str(info.value)


# ----------------------------------------------------------------------------- majority vote


def test_majority_vote_examples() -> None:
    assert majority_vote([1.0, 2.0, 2.0]) == 2.0
    assert majority_vote(["B", "A", "A", "B"]) == "B"  # tie: earliest first occurrence
    assert majority_vote([None, None, "C"]) == "C"  # None is not an answer
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
    assert majority_vote([float("nan"), 3.0]) == 3.0


def test_majority_vote_numerically_equal_answers_are_one_answer() -> None:
    result = majority_vote([2, 1, 1.0, 2.0, 1])
    assert result == 1 and type(result) is int  # 1, 1.0, 1 outvote 2, 2.0; first occurrence
    assert majority_vote([3.0, 3, 4, 4]) == 3.0


@given(st.lists(st.one_of(st.none(), st.integers(0, 4)), max_size=12))
def test_majority_vote_returns_a_most_common_element(answers: list[int | None]) -> None:
    result = majority_vote(answers)
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        assert result is None
        return
    assert result in answers
    top = max(counts.values())
    assert counts[result] == top
    tied = [a for a in counts if counts[a] == top]
    assert result == min(tied, key=answers.index)


# ----------------------------------------------------------------------------- statistics


def test_mean_stderr_examples() -> None:
    assert mean_stderr([0.5]) == (0.5, 0.0)
    mean, se = mean_stderr([1.0, 0.0])
    assert mean == 0.5 and se == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mean_stderr([])


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=2, max_size=50))
def test_mean_stderr_matches_numpy(values: list[float]) -> None:
    mean, se = mean_stderr(values)
    arr = np.asarray(values)
    assert mean == pytest.approx(arr.mean(), rel=1e-9, abs=1e-6)
    assert se == pytest.approx(arr.std(ddof=1) / math.sqrt(len(arr)), rel=1e-6, abs=1e-6)


def test_format_mean_se_matches_the_papers_tables() -> None:
    # 67 right out of 100 is the paper's single-agent arithmetic row: 67.0 ± 4.7.
    assert format_mean_se([1.0] * 67 + [0.0] * 33) == "67.0 ± 4.7"
    assert format_mean_se([0.25, 0.75], scale=1.0, digits=2) == "0.50 ± 0.25"


# ----------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("-2 ** 2", -4),
        ("2 ** -1", 0.5),
        ("+-+3", -3),
        ("((-1 + 2 + 9 * 5) - (-2 + -4 + -4 * -7))", 24),  # BIG-Bench Hard multistep arithmetic
        ("7 - -1 + -1 + -4", 3),
        ("2 \u2212 3 × 4 ÷ 2", -4.0),
        ("1.5 * 2", 3.0),
    ],
)
def test_safe_eval_arithmetic_values(expr: str, expected: float) -> None:
    result = safe_eval_arithmetic(expr)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("x + 1", "names are not allowed"),
        ("abs(-1)", "function calls are not allowed"),
        ("__import__('os').system('true')", "not allowed"),
        ("(1).real", "attributes are not allowed"),
        ("'a' * 3", "constant 'a' is not allowed"),
        ("True + 1", "constant True is not allowed"),
        ("2 ** 101", "exponent 101 is not allowed"),
        ("2 ** -101", "exponent -101 is not allowed"),
        ("((9 ** 100) ** 100) ** 100", "larger than"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("2 ^ 3", "operator ^ is not allowed"),
        ("~1", "unary operator ~ is not allowed"),
        ("1 < 2", "comparisons are not allowed"),
        ("[1, 2]", "List expressions are not allowed"),
        ("(-8) ** 0.5", "complex"),
        ("1e308 * 10", "non-finite"),
        ("1 +", "not a valid arithmetic expression"),
        ("", "not a valid arithmetic expression"),
        ("(" * 300 + "1" + ")" * 300, "not a valid arithmetic expression"),
    ],
)
def test_safe_eval_arithmetic_rejects(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("^", r"\^")):
        safe_eval_arithmetic(expr)


def test_safe_eval_arithmetic_never_calls_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec must not be used")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert safe_eval_arithmetic("3 + 4 * 5") == 23


@given(
    first=st.integers(0, 29),
    rest=st.lists(st.tuples(st.sampled_from(["+", "-", "*"]), st.integers(0, 29)), max_size=8),
)
def test_safe_eval_arithmetic_matches_python_on_flat_expressions(
    first: int, rest: list[tuple[str, int]]
) -> None:
    # The debate paper's task is a+b*c+d-e*f over 0..29: precedence must match Python's.
    expr = str(first) + "".join(f" {op} {n}" for op, n in rest)
    assert safe_eval_arithmetic(expr) == eval(expr)  # trusted, generated input


_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
    "%": operator.mod,
    "/": operator.truediv,
}
_leaf = st.integers(-9, 9).map(lambda n: (f"({n})" if n < 0 else str(n), n))


def _combine(children: st.SearchStrategy) -> st.SearchStrategy:
    def build(left: tuple, op: str, right: tuple) -> tuple:
        value = None
        if left[1] is not None and right[1] is not None:
            try:
                value = _OPS[op](left[1], right[1])
            except ZeroDivisionError:
                value = None
        return f"({left[0]} {op} {right[0]})", value

    return st.builds(build, children, st.sampled_from(sorted(_OPS)), children)


@settings(max_examples=150)
@given(st.recursive(_leaf, _combine, max_leaves=10))
def test_safe_eval_arithmetic_matches_a_tree_oracle(tree: tuple[str, int | float | None]) -> None:
    expr, expected = tree
    if expected is None:  # a division by zero somewhere inside
        with pytest.raises(ValueError, match="division by zero"):
            safe_eval_arithmetic(expr)
        return
    assume(math.isfinite(expected))
    assert safe_eval_arithmetic(expr) == pytest.approx(expected)


def test_safe_eval_caps_the_input_length() -> None:
    from chorus_shared.grading import MAX_EXPRESSION_CHARS, safe_eval_arithmetic

    assert safe_eval_arithmetic("1+" * 100 + "1") == 101
    with pytest.raises(ValueError, match="characters long"):
        safe_eval_arithmetic("1+" * MAX_EXPRESSION_CHARS + "1")
