"""The scripted TriPosT tasks: multistep arithmetic and word sorting.

Each task makes items (generated, or read from ../shared/data/tripost through
``chorus_shared.data``) and the ground-truth step-by-step rationale in the paper's shape:
numbered steps ``(1) ...``, then ``(Final response) So the answer is ...``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from chorus_shared.data import load_dataset_records, register_dataset

__all__ = [
    "TASKS",
    "arithmetic_rationale",
    "generate_arithmetic",
    "load_items",
    "seen_unseen",
    "word_sort_rationale",
]

TASKS = ("multistep_arithmetic", "word_sort")
_RAW = {
    "multistep_arithmetic": "multistep_arithmetic_scripted_rationales.jsonl",
    "word_sort": "word_sorting_scripted_rationales.jsonl",
}
# Our split names -> the raw files' ``new_split`` values.
_SPLITS = {"train": "train", "test": "validation"}


# ----------------------------------------------------------------------------- arithmetic
Tree = int | tuple[str, "Tree", "Tree"]
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
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
    if not path:
        op, a, b = tree
        return _apply(op, a, b)
    op, a, b = tree
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
        return _LETTERS[len(groups) - 1]

    template = _INNER.sub(name, expr)
    if not groups:
        raise ValueError(f"no parenthesised group in {question!r}")
    if len(groups) == 1:  # the whole question is one flat group
        template = "A"
    return template, groups


def arithmetic_rationale(question: str) -> tuple[list[str], int]:
    """Return the ground-truth steps (without numbers) and the answer of a question."""
    template, groups = decompose(question)
    names = _LETTERS[: len(groups)]
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
    if length < 2 or depth < 2:
        raise ValueError("length must be >= 2 and depth >= 2")
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


# ----------------------------------------------------------------------------- word sorting
_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
             "ninth", "tenth", "eleventh", "twelfth"]  # fmt: skip


def _letter(word: str, k: int) -> str:
    return word[k] if k < len(word) else ""


def _index(ch: str) -> int:
    # a-z are 1-26; the original scripts number any other character the same way (ord - 96,
    # so an apostrophe is -57), and a word that ran out of letters sorts first as 0.
    return ord(ch) - 96 if ch else 0


def _q(word: str) -> str:
    return f'"{word}"'


def _bucket(words: list[str], k: int) -> list[tuple[int, list[str]]]:
    keys = sorted({_index(_letter(w, k)) for w in words})
    return [(key, [w for w in words if _index(_letter(w, k)) == key]) for key in keys]


def _have(buckets: list[tuple[int, list[str]]]) -> str:
    parts = []
    for key, ws in buckets:
        inner = _q(ws[0]) if len(ws) == 1 else "[" + " ? ".join(map(_q, ws)) + "]"
        parts.append(f"({key}) {inner}")
    return "We now have: " + " < ".join(parts) + "."


def _letters_of(words: list[str], k: int) -> str:
    return ", ".join(f'{_q(w)}="{_letter(w, k)}" ({_index(_letter(w, k))})' for w in words)


def word_sort_rationale(words: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Return the ground-truth steps as ``(label, text)`` pairs and the sorted words."""
    steps: list[tuple[str, str]] = [("1", f"The first letter: {_letters_of(words, 0)}.")]
    _sort_block(words, 0, "", steps, start=1)
    return steps, sorted(words)


def _label(prefix: str, n: int) -> str:
    return f"{prefix}.{n}" if prefix else str(n)


def _subpart(ws: list[str], k: int) -> str:
    return (
        "Now sort this subpart [" + " ? ".join(map(_q, ws)) + "] by looking at their "
        f"{_ORDINALS[k]} letters: {_letters_of(ws, k)}."
    )


def _sort_block(ws: list[str], k: int, label: str, steps: list, start: int = 0) -> None:
    """Append the steps sorting ``ws`` from letter ``k`` under ``label`` (its own numbering).

    A block whose words all tie keeps going in the same numbering; each tied group of a
    block with several groups gets a nested numbering and its own "Hence" step.
    """
    count = start
    while True:
        buckets = _bucket(ws, k)
        count += 1
        steps.append((_label(label, count), _have(buckets)))
        # The top level always nests its groups, even when every word ties.
        if label and len(buckets) == 1 and len(ws) > 1 and any(len(w) > k + 1 for w in ws):
            count += 1
            steps.append((_label(label, count), _subpart(ws, k + 1)))
            k += 1
            continue
        break
    for _, group in buckets:
        if len(group) < 2 or all(len(w) <= k + 1 for w in group):
            continue
        count += 1
        sub = _label(label, count)
        steps.append((sub, _subpart(group, k + 1)))
        _sort_block(group, k + 1, sub, steps)
    count += 1
    steps.append((_label(label, count), "Hence, we have " + _chain(sorted(ws)) + "."))


def _chain(words: list[str]) -> str:
    return " < ".join(map(_q, words))


def format_labeled(steps: list[tuple[str, str]], final: str) -> str:
    """Join ``(label, text)`` steps and the final response into a rationale."""
    return "\n".join([*(f"({lab}) {t}" for lab, t in steps), f"(Final response) {final}"])


def word_sort_words(question: str) -> list[str]:
    """Return the words of a word-sorting question."""
    match = re.search(r"List:\s*(.*)$", question.strip(), re.S)
    if not match:
        raise ValueError(f"no 'List:' in word-sorting question {question[:80]!r}")
    return match.group(1).split()


# ----------------------------------------------------------------------------- local data
def _reader(task: str):
    def read(root: Path, split: str) -> list[dict]:
        path = root if root.is_file() else root / "tripost" / "raw" / _RAW[task]
        if not path.is_file():
            raise FileNotFoundError(path)
        out = []
        for line_no, line in enumerate(path.read_text().splitlines()):
            raw = json.loads(line)
            meta = raw.get("meta_data", {})
            if meta.get("new_split") != _SPLITS[split]:
                continue
            answer = raw["correct_answer"]
            out.append(
                {
                    "id": f"{task}-{split}-{meta.get('idx', line_no)}",
                    "task": task,
                    "question": raw["question"],
                    "rationale": raw["rationale"],
                    "answer": " ".join(answer) if isinstance(answer, list) else str(answer),
                    "meta": meta,
                }
            )
        return out

    read.__qualname__ = f"read_tripost_{task}"
    return read


for _task in TASKS:
    register_dataset(f"tripost_{_task}", _reader(_task), splits=tuple(_SPLITS), replace=True)


def load_items(task: str, split: str, *, path: str | None = None) -> list[dict]:
    """Return the items of a task's split (``train`` or ``test``) from the local data."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return load_dataset_records(f"tripost_{task}", split, path=path)


def seen_unseen(item: dict) -> str:
    """Return ``"seen"`` or ``"unseen"`` for an evaluation item, as the paper defines them.

    Arithmetic: seen = length 3-4 with depth 2 (at most two levels of groups); word sorting:
    seen = up to 7 words.
    """
    if item["task"] == "multistep_arithmetic":
        meta = item["meta"]
        return "seen" if meta["length"] <= 4 and len(meta["depth_levels"]) <= 2 else "unseen"
    return "seen" if len(word_sort_words(item["question"])) <= 7 else "unseen"
