"""Multistep arithmetic: expressions, their ground-truth rationales, and generated items.

A question is nested groups of numbers (``((1 - 8 + 6) - (-6 * 2))``); the rationale names
the innermost groups (A, B, ...), computes each fully parenthesised one operation at a time,
then combines them, as the TriPosT rationales do.
"""

from __future__ import annotations

import random
import re

__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "arithmetic_rationale",
    "decompose",
    "format_rationale",
    "generate_arithmetic",
    "reduction_chain",
    "render",
]

# Deeper trees have 2**(depth-1) groups: the paper's unseen split goes to depth 4, and past
# about 8 an item is too long for any model's context (and the recursion would be deep).
MAX_DEPTH = 8
MAX_LENGTH = 20
Tree = int | tuple[str, "Tree", "Tree"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_INNER = re.compile(r"\(([^()]*)\)")


def _tokens(text: str) -> list[str]:
    # Numbers carry their sign ("-7"); a minus followed by a space is an operator.
    toks = re.findall(r"-?\d+|[()+*-]|[A-Z]", text)
    if "".join(toks) != re.sub(r"\s+", "", text):
        raise ValueError(f"cannot read arithmetic expression {text!r}")
    return toks


def _parse_flat(text: str) -> Tree:
    """Parse ``a op b op c`` with * before + and -, left to right."""
    toks = _tokens(text)
    if len(toks) % 2 == 0:
        raise ValueError(f"cannot read arithmetic expression {text!r}")
    terms: list[Tree] = [int(toks[0])]
    ops: list[str] = []
    for op, num in zip(toks[1::2], toks[2::2], strict=True):
        if op == "*":
            terms[-1] = ("*", terms[-1], int(num))
        else:
            ops.append(op)
            terms.append(int(num))
    tree = terms[0]
    for op, term in zip(ops, terms[1:], strict=True):
        tree = (op, tree, term)
    return tree


def _parse_full(text: str) -> Tree:
    """Parse a fully parenthesised binary expression like ``((1 + 2) * -3)``."""
    toks = _tokens(text)
    pos = 0

    def node() -> Tree:
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok != "(":
            return int(tok)
        left = node()
        op = toks[pos]
        pos += 1
        right = node()
        if toks[pos] != ")":
            raise ValueError(f"expected ')' in {text!r}")
        pos += 1
        return (op, left, right)

    try:
        tree = node()
    except (IndexError, ValueError) as err:
        raise ValueError(f"cannot read arithmetic expression {text!r}") from err
    if pos != len(toks):
        raise ValueError(f"trailing text in arithmetic expression {text!r}")
    return tree


def render(tree: Tree) -> str:
    """Return the fully parenthesised text of a tree."""
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree
    return f"({render(left)} {op} {render(right)})"


def _apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _reducible(tree: Tree, path: tuple = ()) -> list[tuple]:
    """Paths (left to right) of the operations whose operands are both numbers."""
    if isinstance(tree, int):
        return []
    _, a, b = tree
    if isinstance(a, int) and isinstance(b, int):
        return [path]
    return _reducible(a, (*path, 1)) + _reducible(b, (*path, 2))


def _reduce_at(tree: Tree, path: tuple) -> Tree:
    # ``path`` comes from _reducible: it leads through operations to one on two numbers.
    if isinstance(tree, int):
        raise ValueError(f"no operation at path {path} (reached the number {tree})")
    op, a, b = tree
    if not path:
        if not (isinstance(a, int) and isinstance(b, int)):
            raise ValueError(f"the operation {render(tree)} has an unreduced operand")
        return _apply(op, a, b)
    if path[0] == 1:
        return (op, _reduce_at(a, path[1:]), b)
    return (op, a, _reduce_at(b, path[1:]))


def reduction_chain(tree: Tree) -> list[str]:
    """Return the texts of ``tree`` reduced one operation at a time, down to the value.

    The paper's order: in rounds, every operation whose operands are numbers at the start of
    the round is computed, one per step, left to right.
    """
    chain = [render(tree)]
    while not isinstance(tree, int):
        # Reducing at one path never moves the others: paths point at disjoint subtrees.
        for path in _reducible(tree):
            tree = _reduce_at(tree, path)
            chain.append(render(tree))
    return chain


def decompose(question: str) -> tuple[str, list[str]]:
    """Split a question into its template (``"(A - B)"``) and the innermost groups it names."""
    expr = question.strip()
    expr = expr.removeprefix("Q:").strip().removesuffix("=").strip()
    groups: list[str] = []

    def name(match: re.Match) -> str:
        groups.append(f"({match.group(1)})")
        return LETTERS[len(groups) - 1]

    template = _INNER.sub(name, expr)
    if not groups:
        raise ValueError(f"no parenthesised group in {question!r}")
    if len(groups) == 1:  # the whole question is one flat group
        template = "A"
    return template, groups


def arithmetic_rationale(question: str) -> tuple[list[str], int]:
    """Return the ground-truth steps (without numbers) and the answer of a question."""
    template, groups = decompose(question)
    names = LETTERS[: len(groups)]
    where = [f"{n} = {g}" for n, g in zip(names, groups, strict=True)]
    listed = where[0] if len(where) == 1 else ", ".join(where[:-1]) + " and " + where[-1]
    steps = [f'This equation can be written as "{template}", where {listed}.']
    values: dict[str, int] = {}
    for n, g in zip(names, groups, strict=True):
        tree = _parse_flat(g[1:-1])
        chain = [g, *reduction_chain(tree)]
        if chain[0] == chain[1]:  # a single operation needs no extra parentheses
            chain = chain[1:]
        values[n] = int(chain[-1])
        steps.append(f"Let's calculate {n} = " + " = ".join(chain) + ".")
    if template != "A":
        substituted = re.sub(r"[A-Z]", lambda m: str(values[m.group(0)]), template)
        chain = reduction_chain(_parse_full(substituted))
        steps.append(f"Then, the final equation is {template} = " + " = ".join(chain) + ".")
        answer = int(chain[-1])
    else:
        answer = values["A"]
    return steps, answer


def format_rationale(steps: list[str], final: str) -> str:
    """Number the steps and add the final response line."""
    lines = [f"({i}) {s}" for i, s in enumerate(steps, 1)]
    return "\n".join([*lines, f"(Final response) {final}"])


def generate_arithmetic(
    n: int, *, length: int = 3, depth: int = 2, seed: int = 0, low: int = -9, high: int = 9
) -> list[dict]:
    """Return ``n`` generated items: groups of ``length`` numbers, 2**(depth-1) groups.

    Depth 2 is one level of groups under the top operation, as in the BIG-Bench task.
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1 (items to generate), got {n}")
    if not 2 <= length <= MAX_LENGTH:
        raise ValueError(f"--length must be between 2 and {MAX_LENGTH}, got {length}")
    if not 2 <= depth <= MAX_DEPTH:
        raise ValueError(f"--depth must be between 2 and {MAX_DEPTH}, got {depth}")
    rng = random.Random(seed)
    items = []
    for i in range(n):

        def group() -> str:
            nums = [str(rng.randint(low, high)) for _ in range(length)]
            ops = [rng.choice("+-*") for _ in range(length - 1)]
            return (
                "("
                + " ".join(x for pair in zip(nums, [*ops, ""], strict=True) for x in pair).strip()
                + ")"
            )

        def tree(d: int) -> str:
            if d == 1:
                return group()
            return f"({tree(d - 1)} {rng.choice('+-*')} {tree(d - 1)})"

        question = f"Q: {tree(depth)} = "
        steps, answer = arithmetic_rationale(question)
        items.append(
            {
                "id": f"arith-gen-l{length}d{depth}-s{seed}-{i}",
                "task": "multistep_arithmetic",
                "question": question,
                "rationale": format_rationale(steps, f"So the answer is {answer}."),
                "answer": str(answer),
                "meta": {"length": length, "depth_levels": [2] * (depth - 1)},
            }
        )
    return items
