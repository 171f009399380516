"""The four TriPosT tasks and their local data.

Scripted tasks (multistep arithmetic, word sorting): items are generated or read from
../shared/data/tripost, and their ground-truth step-by-step rationales are made by a script in
the paper's shape: numbered steps ``(1) ...``, then ``(Final response) So the answer is ...``.

Multiple-choice tasks (date understanding, logical deduction): BIG-Bench items with the
LLM-made rationales of the TriPosT data; their verifier and improver are LLMs. The
logical-deduction raw file of the original is missing from the data; :func:`read_logical_deduction`
rebuilds it from BIG-Bench's 3/5/7-object task files (see its docstring for how).
All data is read through ``chorus_shared.data``'s loader.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from chorus_shared.data import load_dataset_records, register_dataset
from chorus_shared.grading import extract_choice

__all__ = [
    "MC_TASKS",
    "SCRIPTED_TASKS",
    "TASKS",
    "answer_of",
    "arithmetic_rationale",
    "generate_arithmetic",
    "load_items",
    "seen_unseen",
    "word_sort_rationale",
]

SCRIPTED_TASKS = ("multistep_arithmetic", "word_sort")
# Multiple choice, LLM-made rationales, LLM verifier and improver (as in the paper).
MC_TASKS = ("date_understanding", "logical_deduction")
TASKS = SCRIPTED_TASKS + MC_TASKS
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


for _task in SCRIPTED_TASKS:
    register_dataset(f"tripost_{_task}", _reader(_task), splits=tuple(_SPLITS), replace=True)


# ----------------------------------------------------------------------------- multiple choice
_LETTERS_MC = "ABCDEFG"
_DATE_RAW = "date_understanding_codex_rationales_cleaned.jsonl"
_LD_SIZES = {"three": 3, "five": 5, "seven": 7}
_LD_TRAIN = "training/logical_deduction/logical_deduction_baseline_rationale_3-5.jsonl"
_LD_VAL = "validation/logical_deduction/logical_deduction_baseline_rationale_3-5_val.jsonl"
# The header the TriPosT logical-deduction rationales open with (after "Let's think step by
# step."); we keep it as the rationale's first, unnumbered line.
LD_HEADER = 'Let "??" represents 0 or more objects, and "?" represents exactly 1 object.'
_STEP_LINE = re.compile(r"^\(\d+\)", re.M)


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mc_item(task: str, rid: str, question: str, choices: str, rationale: str | None,
             answer: str, meta: dict) -> dict:  # fmt: skip
    letters = "".join(re.findall(r"^\(([A-Z])\)", choices, re.M))
    if answer not in letters:
        raise ValueError(f"{rid}: answer {answer!r} is not one of the options {letters!r}")
    return {
        "id": rid,
        "task": task,
        "question": f"{question.strip().removeprefix('Q:').strip()}\nOptions:\n{choices}",
        "rationale": rationale,
        "answer": answer,
        "choices": letters,
        "meta": meta,
    }


def read_date_understanding(root: Path, split: str) -> list[dict]:
    """Return the date-understanding items of ``split`` from TriPosT's raw file (Codex-made,
    cleaned rationales; ``new_split`` train 221 / validation 77, our "test").

    ``meta["n_steps"]`` counts the rationale's numbered steps (``(k)`` at a line start): the
    paper's seen split is 1-2 steps, unseen 3 or more.
    """
    path = root if root.is_file() else root / "tripost" / "raw" / _DATE_RAW
    out = []
    for line_no, raw in enumerate(_jsonl(path)):
        meta = dict(raw.get("meta_data", {}))
        if meta.get("new_split") != _SPLITS[split]:
            continue
        meta["n_steps"] = len(_STEP_LINE.findall(raw["rationale"]))
        out.append(
            _mc_item(
                "date_understanding",
                f"date_understanding-{split}-{line_no}",
                raw["question"],
                raw["formatted_choices"],
                raw["rationale"],
                raw["correct_choice"],
                meta,
            )
        )
    return out


def _ld_key(question: str, choices: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    # The paragraph without the task preface, and the option texts; BIG-Bench spells
    # "motorcyle", the TriPosT data (and BBH) "motorcycle".
    paragraph = re.sub(r"^The following paragraphs.*?within each paragraph\.\s*", "",
                       question.strip())  # fmt: skip
    return paragraph.replace("motorcyle", "motorcycle"), tuple(
        c.replace("motorcyle", "motorcycle") for c in choices
    )


def _options(formatted: str) -> tuple[str, ...]:
    return tuple(re.sub(r"^\([A-Z]\)\s*", "", line) for line in formatted.splitlines())


def rebuild_logical_deduction(root: Path) -> list[dict]:
    """Return the rebuilt rows of TriPosT's missing logical-deduction raw file, in that file's
    shape (``question``, ``formatted_choices``, ``correct_choice``, ``rationale`` or None,
    ``meta_data`` {split, new_split, idx, n_objects, source}).

    How: every example of BIG-Bench's ``logical_deduction/{three,five,seven}_objects`` task
    files (300 + 500 + 700; one paragraph is asked 3, 5 or 7 questions, one per position) becomes
    a row: question = the task preface + the paragraph ("motorcyle" spelled "motorcycle", as in
    the TriPosT data), options lettered (A), (B), ... in the file's order, correct choice = the
    option scored 1. Rows whose paragraph and options match a record of TriPosT's
    ``training/logical_deduction/*_baseline_rationale_3-5.jsonl`` (360, all matched) take its
    Codex-made rationale and are ``train``; the 40 of the TriPosT validation file are
    ``dev`` (the original's validation set during training). Our ``test`` split holds the rows
    whose paragraph appears in neither file: a training rationale derives the full order of its
    paragraph, so another question on the same paragraph would be answered from memory. That
    leaves 12 three-object, 40 five-object (seen) and 700 seven-object (unseen) test rows; the
    348 other 3/5-object rows (a paragraph in common with train or dev) are ``unused``.
    """
    bigbench = root / "bigbench" / "logical_deduction"
    tripost = root / "tripost"
    labelled: dict[tuple, tuple[str, str, str]] = {}
    for split, rel in (("train", _LD_TRAIN), ("dev", _LD_VAL)):
        for rec in _jsonl(tripost / rel):
            meta = rec["meta_data"]
            key = _ld_key(meta["question"], _options(meta["formatted_choices"]))
            labelled[key] = (split, meta["rationale"], meta["answer"])
    used_paragraphs = {key[0] for key in labelled}
    rows, matched = [], 0
    for size, n in _LD_SIZES.items():
        task = json.loads((bigbench / f"{size}_objects" / "task.json").read_text())
        preface = " ".join(task["task_prefix"].split())
        for idx, ex in enumerate(task["examples"]):
            options = tuple(ex["target_scores"])
            key = _ld_key(ex["input"], options)
            right = [k for k, v in enumerate(ex["target_scores"].values()) if v == 1]
            if len(right) != 1:
                raise ValueError(f"logical_deduction {size}_objects example {idx}: not one answer")
            found = labelled.get(key)
            rationale: str | None = None
            if found is not None:
                matched += 1
                split, labelled_rationale, answer = found
                if answer != _LETTERS_MC[right[0]]:
                    raise ValueError(f"{size}_objects example {idx}: TriPosT answer {answer} "
                                     f"!= BIG-Bench {_LETTERS_MC[right[0]]}")  # fmt: skip
                rationale = f"{LD_HEADER}\n{labelled_rationale}"
            else:
                split = "unused" if key[0] in used_paragraphs else "test"
            rows.append(
                {
                    "question": f"Q: {preface} {key[0]}",
                    "formatted_choices": "\n".join(
                        f"({_LETTERS_MC[k]}) {o}" for k, o in enumerate(key[1])
                    ),
                    "correct_choice": _LETTERS_MC[right[0]],
                    "rationale": rationale,
                    "meta_data": {
                        "split": split,
                        "new_split": {"test": "validation"}.get(split, split),
                        "idx": f"{size}-{idx}",
                        "n_objects": n,
                        "source": f"bigbench/logical_deduction/{size}_objects/task.json",
                    },
                }
            )
    if matched != len(labelled):
        raise ValueError(
            f"logical_deduction: {len(labelled) - matched} TriPosT records match no BIG-Bench "
            "example; the data folder is not the one this rebuild was written for"
        )
    return rows


def read_logical_deduction(root: Path, split: str) -> list[dict]:
    """Return the logical-deduction items of ``split`` (train 360 / test 752) from the
    rebuilt raw file (:func:`rebuild_logical_deduction`)."""
    # A file: a rebuilt raw file written earlier (the same rows).
    rows = _jsonl(root) if root.is_file() else rebuild_logical_deduction(root)
    return [
        _mc_item(
            "logical_deduction",
            f"logical_deduction-{split}-{row['meta_data']['idx']}",
            row["question"],
            row["formatted_choices"],
            row["rationale"],
            row["correct_choice"],
            row["meta_data"],
        )
        for row in rows
        if row["meta_data"]["split"] == split
    ]


register_dataset("tripost_date_understanding", read_date_understanding, splits=tuple(_SPLITS),
                 replace=True)  # fmt: skip
register_dataset("tripost_logical_deduction", read_logical_deduction, splits=tuple(_SPLITS),
                 replace=True)  # fmt: skip


def answer_of(item: dict, rationale: str) -> str | None:
    """Return the answer a rationale gives for ``item``, or None when it has none readable.

    Scripted tasks: the text after ``(Final response) So the answer is`` (last such line),
    whitespace-normalised, no final period. Multiple choice: the option letter of the last
    ``(X)`` on the final-response line (``chorus_shared.grading.extract_choice``, only the
    item's letters count).
    """
    if item.get("task") in MC_TASKS:
        lines = re.findall(r"\(Final response\)(.*)", rationale)
        return extract_choice(lines[-1], item["choices"]) if lines else None
    found = _ANSWER.findall(rationale)
    return " ".join(found[-1].strip().rstrip(".").split()) if found else None


_ANSWER = re.compile(r"\(Final response\)\s*So the answer is:?\s*(.+)")


def load_items(task: str, split: str, *, path: str | None = None) -> list[dict]:
    """Return the items of a task's split (``train`` or ``test``) from the local data."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return load_dataset_records(f"tripost_{task}", split, path=path)


def seen_unseen(item: dict) -> str:
    """Return ``"seen"`` or ``"unseen"`` for an evaluation item, as the paper defines them.

    Arithmetic: seen = length 3-4 with depth 2 (at most two levels of groups); word sorting:
    seen = up to 7 words; date understanding: seen = 1-2 rationale steps; logical deduction:
    seen = 3 and 5 objects.
    """
    if item["task"] == "date_understanding":
        return "seen" if item["meta"]["n_steps"] <= 2 else "unseen"
    if item["task"] == "logical_deduction":
        return "seen" if item["meta"]["n_objects"] <= 5 else "unseen"
    if item["task"] == "multistep_arithmetic":
        meta = item["meta"]
        return "seen" if meta["length"] <= 4 and len(meta["depth_levels"]) <= 2 else "unseen"
    return "seen" if len(word_sort_words(item["question"])) <= 7 else "unseen"
