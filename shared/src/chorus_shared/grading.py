"""Answer extraction and scoring shared by every paper package.

Two rules hold throughout: an answer that cannot be parsed is ``None``, and ``None`` is never
equal to anything, so an unparseable reply can never be graded right (the original debate code
counted such replies as correct).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

__all__ = [
    "extract_boxed",
    "extract_choice",
    "extract_gsm_answer",
    "extract_last_number",
    "format_mean_se",
    "format_stat",
    "gsm_ground_truth",
    "majority_vote",
    "mean_stderr",
    "numbers_equal",
    "parse_number",
    "safe_eval_arithmetic",
]

T = TypeVar("T", bound=Hashable)

_SIGNS = "-+\u2212"  # ASCII minus, plus, and the Unicode minus sign models like to emit
_CURRENCY = r"[$€£]"
# Digits with correctly grouped thousands separators, or a plain run of digits; then an optional
# fraction (a bare trailing "." is swallowed so "costs $1,234." reads as 1234), or ".5" style.
# The lookarounds stop a match from starting or ending inside a run of digits, so "1,2345" is
# not read as "1,234" followed by "5".
_MANTISSA = r"(?<!\d)(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d*)?|(?<![\d.])\.\d+"
_EXPONENT = r"(?:[eE][-+]?\d+)?"

# A sign is only a sign when it does not follow a word character: "3-4" is a range (or a
# subtraction), and its last number is 4, not -4.
_NUMBER_IN_TEXT = re.compile(
    rf"""
    (?:(?<!\w)(?P<sign>[{_SIGNS}]))?
    {_CURRENCY}?
    (?:(?<!\w)(?P<sign2>[{_SIGNS}]))?
    (?P<num>(?:{_MANTISSA}){_EXPONENT})
    """,
    re.VERBOSE,
)

_NUMBER_TOKEN = re.compile(
    rf"""
    \s*(?P<sign>[{_SIGNS}])?\s*{_CURRENCY}?\s*(?P<sign2>[{_SIGNS}])?
    (?P<num>(?:{_MANTISSA}){_EXPONENT})
    \s*%?\s*\.?\s*
    """,
    re.VERBOSE,
)


def _to_float(sign: str | None, sign2: str | None, digits: str) -> float | None:
    if sign and sign2:
        return None  # "-$-3" is not a number anyone means
    value = float(digits.replace(",", ""))
    s = sign or sign2
    return -value if s in ("-", "\u2212") else value


def parse_number(text: str) -> float | None:
    """Parse one numeric token such as ``"-1,234.5"``, ``"$18"``, ``"50%"`` or ``".5"``.

    Returns the value as a float, or None when ``text`` is not exactly one number. Thousands
    separators must be well grouped ("1,23" is not a number); a percent sign is dropped, not
    divided out, because answers like "50%" are compared with targets written as 50.
    """
    m = _NUMBER_TOKEN.fullmatch(text)
    if m is None:
        return None
    return _to_float(m["sign"], m["sign2"], m["num"])


def extract_last_number(text: str) -> float | None:
    """Return the last number written in free text as a float, or None when there is none.

    Thousands separators inside a number are kept ("1,234 apples" is 1234), a minus is a sign
    only when it does not follow a letter or digit ("3-4" ends with 4), and a sentence-ending
    period is not a decimal point.
    """
    last = None
    for last in _NUMBER_IN_TEXT.finditer(text):  # noqa: B007 - only the final match matters
        pass
    if last is None:
        return None
    return _to_float(last["sign"], last["sign2"], last["num"])


_BOXED_OPEN = re.compile(r"\\boxed\s*\{")


def extract_boxed(text: str) -> str | None:
    r"""Return the contents of the last ``\boxed{...}`` in ``text``, nested braces included.

    Returns None when there is no ``\boxed{`` or when the last one is never closed.
    """
    opens = list(_BOXED_OPEN.finditer(text))
    if not opens:
        return None
    start = opens[-1].end()
    depth = 1
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


_LATEX_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\[,!;: ]|\\left|\\right|\^\s*\{?\\circ\}?|\\\$|\$")
_LATEX_FRAC = re.compile(
    rf"(?P<sign>[{_SIGNS}])?\s*\\[dt]?frac\s*\{{(?P<a>[^{{}}]+)\}}\s*\{{(?P<b>[^{{}}]+)\}}"
)


def _boxed_number(content: str) -> float | None:
    cleaned = _LATEX_WRAPPERS.sub(r"\1", content)
    cleaned = _LATEX_NOISE.sub("", cleaned).replace("{,}", ",").replace("\\%", "%").strip()
    value = parse_number(cleaned)
    if value is not None:
        return value
    frac = _LATEX_FRAC.fullmatch(cleaned)
    if frac is not None:
        a, b = parse_number(frac["a"]), parse_number(frac["b"])
        if a is None or b is None or b == 0:
            return None
        return -(a / b) if frac["sign"] in ("-", "\u2212") else a / b
    # "18 dollars" or "x = 18": one number and some words around it is still unambiguous.
    found = list(_NUMBER_IN_TEXT.finditer(cleaned))
    if len(found) == 1:
        return _to_float(found[0]["sign"], found[0]["sign2"], found[0]["num"])
    return None


def extract_gsm_answer(text: str) -> float | None:
    r"""Return the GSM8K-style numeric answer of a reply as a float, or None.

    The number inside the last ``\boxed{}`` wins when it reads as a number (LaTeX such as
    ``\$``, ``\text{ dollars}`` and ``\frac{a}{b}`` is understood); otherwise the last number
    anywhere in the text; None when the reply holds no number at all.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        value = _boxed_number(boxed)
        if value is not None:
            return value
    return extract_last_number(text)


def extract_choice(text: str, choices: str = "ABCD") -> str | None:
    """Return the letter of the last ``(X)`` in ``text`` whose X is one of ``choices``.

    Returns None when there is none. Only the exact letters in ``choices`` count, so with the
    default "(a)" is not an answer: lowercase "(a)"/"(b)" are usually enumerations in prose.
    """
    if not choices:
        raise ValueError("choices must name at least one letter")
    pattern = re.compile(r"\(([" + re.escape(choices) + r"])\)")
    found = pattern.findall(text)
    return found[-1] if found else None


def numbers_equal(
    a: float | None, b: float | None, rel_tol: float = 1e-6, abs_tol: float = 1e-6
) -> bool:
    """Return True when both values are equal numbers; always False if either is None.

    Two whole numbers compare exactly (1,450,001 is not 1,450,000); the tolerances apply only
    when a decimal is involved.
    """
    if a is None or b is None:
        return False
    if float(a).is_integer() and float(b).is_integer():
        return int(a) == int(b)
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


_GSM_MARK = re.compile(r"####\s*")


def gsm_ground_truth(answer_field: str) -> float:
    """Return the final answer of a GSM8K ``answer`` field (the number after the last ``####``).

    Thousands separators and signs are handled ("#### 1,600" is 1600, "#### -10" is -10).
    Raises ValueError naming the text when there is no ``####`` or no number after it.
    """
    marks = list(_GSM_MARK.finditer(answer_field))
    if not marks:
        raise ValueError(f"no '#### ' answer marker in GSM8K answer field: {answer_field!r}")
    tail = answer_field[marks[-1].end() :].strip()
    value = parse_number(tail.splitlines()[0]) if tail else None
    if value is None:
        raise ValueError(f"no number after '#### ' in GSM8K answer field: {answer_field!r}")
    return value


def majority_vote(answers: Sequence[T | None]) -> T | None:
    """Return the most common non-None answer, or None when every answer is None.

    Ties go to the answer that appeared first. Answers are compared with ``==``, so numerically
    equal numbers (1 and 1.0) are one answer; the element returned is its first occurrence.
    NaN is treated like None. Answers must be hashable.
    """
    counts: dict[T, int] = {}
    for answer in answers:
        if answer is None or (isinstance(answer, float) and math.isnan(answer)):
            continue
        # A dict keeps the first-inserted key object, which gives both the tie-break and
        # "return the first occurrence" for free.
        counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return None
    return max(counts, key=counts.__getitem__)


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Return ``(mean, standard error of the mean)`` of ``values``.

    The standard error is the sample standard deviation (ddof=1) over sqrt(n), and 0.0 for a
    single value. Raises ValueError for an empty sequence.
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_stderr needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def format_mean_se(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """Return ``"mean ± se"`` of ``values`` scaled (by 100: accuracies as percentages).

    For example 0/1 correctness values give "67.0 ± 4.7", as in the papers' tables.
    """
    return format_stat(*mean_stderr(values), scale=scale, digits=digits)


def format_stat(mean: float, se: float, scale: float = 100.0, digits: int = 1) -> str:
    """Return ``"mean ± se"`` of an already computed mean and standard error, scaled.

    The one formatter of the house: :func:`format_mean_se` and every table use it.
    """
    return f"{mean * scale:.{digits}f} ± {se * scale:.{digits}f}"


# Numbers the evaluator works with; ** of a negative base can still produce a complex.
_Number = int | float
_BINARY_OPS: dict[type[ast.operator], Callable[[_Number, _Number], _Number | complex]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPS: dict[type[ast.unaryop], Callable[[_Number], _Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_OP_SYMBOLS = {
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Not: "not",
}
_MAX_EXPONENT = 100
# Exponents are capped, but (9**100)**100**... can still nest; capping the size of every
# intermediate integer keeps any input cheap to evaluate.
_MAX_INT_BITS = 4096
# Symbols models and datasets write for the ASCII operators.
_OPERATOR_ALIASES = str.maketrans({"\u2212": "-", "×": "*", "÷": "/"})


def _check_magnitude(value: _Number | complex) -> _Number:
    if isinstance(value, complex):
        raise ValueError("the expression has a complex result, which is not allowed")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("the expression overflows to a non-finite float, which is not allowed")
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise ValueError(f"intermediate result larger than 2**{_MAX_INT_BITS} is not allowed")
    return value


def _eval_node(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant):
        # bool is an int subclass; "True + 1" is not arithmetic anyone should be grading.
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ValueError(f"constant {node.value!r} is not allowed: only numbers are")
        return _check_magnitude(node.value)
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY_OPS.get(type(node.op))
        if unary is None:
            symbol = _OP_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise ValueError(f"unary operator {symbol} is not allowed: only + and - are")
        return _check_magnitude(unary(_eval_node(node.operand)))
    if isinstance(node, ast.BinOp):
        binary = _BINARY_OPS.get(type(node.op))
        if binary is None:
            symbol = _OP_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise ValueError(f"operator {symbol} is not allowed: only + - * / // % ** are")
        left, right = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError(
                f"exponent {right} is not allowed: its size must be <= {_MAX_EXPONENT}"
            )
        try:
            return _check_magnitude(binary(left, right))
        except ZeroDivisionError as err:
            raise ValueError(f"division by zero: {err}") from None
        except OverflowError as err:
            raise ValueError(f"numeric overflow: {err}") from None
    what = {
        ast.Name: "names",
        ast.Call: "function calls",
        ast.Attribute: "attributes",
        ast.Subscript: "subscripts",
        ast.Compare: "comparisons",
        ast.BoolOp: "boolean operators",
    }.get(type(node), f"{type(node).__name__} expressions")
    raise ValueError(
        f"{what} are not allowed in arithmetic: only numbers, + - * / // % ** and parentheses are"
    )


# No arithmetic a task or a model writes needs more; the cap bounds parse time and memory.
MAX_EXPRESSION_CHARS = 10_000


def safe_eval_arithmetic(expr: str) -> int | float:
    """Evaluate an arithmetic expression without ``eval``, returning an int or a float.

    Allowed: int and float literals, binary ``+ - * / // % **``, unary ``+``/``-`` and
    parentheses (the Unicode minus, × and ÷ are read as -, * and /). Anything else (names,
    calls, attributes, strings, exponents larger than 100 in size, division by zero,
    unreasonably large integers) raises ValueError saying what is not allowed.
    """
    if not isinstance(expr, str):
        raise ValueError(f"expected an expression string, got {type(expr).__name__}")
    if len(expr) > MAX_EXPRESSION_CHARS:
        # Parsing is linear but costly per character (10 MB took seconds and gigabytes).
        raise ValueError(
            f"expression is {len(expr)} characters long; at most {MAX_EXPRESSION_CHARS} allowed"
        )
    try:
        tree = ast.parse(expr.translate(_OPERATOR_ALIASES).strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not a valid arithmetic expression: {expr[:80]!r} ({err.msg})") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"expression is nested too deeply: {expr[:80]!r}") from None
    try:
        return _eval_node(tree)
    except RecursionError:
        raise ValueError(f"expression is nested too deeply: {expr[:80]!r}") from None
