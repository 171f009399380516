"""Word sorting: the ground-truth rationale of a word list, in the TriPosT data's shape.

First letters with their alphabet indices, the order they imply, recursive sub-sorts of tied
groups on the next letter, then the final response.
"""

from __future__ import annotations

import re

__all__ = ["format_labeled", "word_sort_rationale", "word_sort_words"]

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
