"""Training examples with per-token loss weights, built from segment or chat-message records.

Every training package stores its data as records in one of two shapes (see TRAINING_API.md):

- ``{"id", "segments": [{"text", "weight"}, ...], "add_eos"?}``: raw text pieces, no template;
- ``{"id", "messages": [{"role", "content", "weight"?}, ...]}``: rendered with the chat template.

Each segment is tokenized on its own and the ids are concatenated, so a segment boundary is a
token boundary by construction: the tokens that carry a target segment's weight decode to exactly
that segment's text, even when the tokenizer would merge characters across the boundary (a
target that starts mid-word). Weights are aligned to tokens: ``weights[i]`` scales the loss of
predicting ``input_ids[i]`` from the tokens before it, so ``weights[0]`` is always 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

TRUNCATIONS = ("right", "left")


@dataclass
class TokenizedExample:
    """One tokenized training example: ids and one loss weight per id."""

    id: str
    input_ids: list[int]
    weights: list[float]

    @property
    def n_target_tokens(self) -> int:
        """Returns how many tokens carry a non-zero loss weight."""
        return sum(1 for w in self.weights if w > 0)


@dataclass
class BuildStats:
    """Counts from one :func:`build_examples` call (nothing is dropped without being counted)."""

    n_records: int = 0
    n_examples: int = 0
    n_truncated: int = 0
    n_empty: int = 0
    n_tokens: int = 0
    n_target_tokens: int = 0
    truncated_ids: list[str] = field(default_factory=list)
    empty_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Returns the stats as a JSON-serialisable dict (id lists capped at 20 entries)."""
        data = asdict(self)
        data["truncated_ids"] = data["truncated_ids"][:20]
        data["empty_ids"] = data["empty_ids"][:20]
        return data

    def summary(self) -> str:
        """Returns a one-line human summary."""
        return (
            f"{self.n_examples}/{self.n_records} examples kept, {self.n_truncated} truncated, "
            f"{self.n_empty} dropped with no trainable token; {self.n_tokens} tokens, "
            f"{self.n_target_tokens} trained"
        )


class NoTrainableTokensError(ValueError):
    """No example has a token with a positive loss weight."""


def record_segments(record: Mapping[str, Any], tokenizer: Any) -> list[tuple[str, float]]:
    """Returns the record as ``(text, weight)`` pieces (chat records rendered with the template).

    Raises ``ValueError`` with what to fix for a malformed record or a tokenizer without a
    chat template when the record has messages.
    """
    rid = record.get("id", "?")
    if "segments" in record:
        pieces = []
        for i, seg in enumerate(record["segments"]):
            if not isinstance(seg, Mapping) or "text" not in seg:
                raise ValueError(f"record {rid!r}: segment {i} must be a mapping with 'text'")
            pieces.append((str(seg["text"]), float(seg.get("weight", 1.0))))
        if record.get("add_eos"):
            if tokenizer.eos_token is None:
                raise ValueError(f"record {rid!r} asks for add_eos but the tokenizer has no EOS")
            pieces.append((tokenizer.eos_token, pieces[-1][1] if pieces else 1.0))
        return pieces
    if "messages" in record:
        return _message_segments(record, tokenizer)
    raise ValueError(f"record {rid!r} needs 'segments' or 'messages' (see TRAINING_API.md)")


def _message_segments(record: Mapping[str, Any], tokenizer: Any) -> list[tuple[str, float]]:
    rid = record.get("id", "?")
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"record {rid!r} has chat messages but the tokenizer has no chat template; give "
            "records as 'segments' or use a model with a chat template"
        )
    messages = list(record["messages"])
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    pieces: list[tuple[str, float]] = []
    rendered_before = ""
    for i, message in enumerate(messages):
        default = 1.0 if message["role"] == "assistant" else 0.0
        weight = float(message.get("weight", default))
        # Render prefixes: the text a message adds is the difference of two renderings, so any
        # template (system handling, BOS, separators) is followed exactly.
        rendered = tokenizer.apply_chat_template(plain[: i + 1], tokenize=False)
        if not rendered.startswith(rendered_before):
            raise ValueError(
                f"record {rid!r}: the chat template does not render conversations "
                "incrementally, so message boundaries cannot be located"
            )
        chunk = rendered[len(rendered_before) :]
        rendered_before = rendered
        content = message["content"]
        at = chunk.find(content) if content else -1
        if at < 0:
            pieces.append((chunk, 0.0))
            continue
        head, tail = chunk[:at], chunk[at + len(content) :]
        pieces.append((head, 0.0))
        pieces.append((content, weight))
        # The end-of-turn token is what teaches the model to stop: it shares the assistant
        # turn's weight; the template's separators after it stay context.
        eot = _end_of_turn(tail, tokenizer)
        if message["role"] == "assistant" and eot:
            pieces.append((tail[:eot], weight))
            pieces.append((tail[eot:], 0.0))
        else:
            pieces.append((tail, 0.0))
    return [(text, w) for text, w in pieces if text]


def _end_of_turn(tail: str, tokenizer: Any) -> int:
    """Returns the end offset of the first special token in ``tail`` (0 when none)."""
    best = None
    for token in tokenizer.all_special_tokens:
        at = tail.find(token)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, at + len(token))
    return best[1] if best else 0


def tokenize_segments(
    pieces: Sequence[tuple[str, float]], tokenizer: Any
) -> tuple[list[int], list[float]]:
    """Returns ``(input_ids, weights)`` for text pieces, each tokenized on its own."""
    ids: list[int] = []
    weights: list[float] = []
    for text, weight in pieces:
        piece_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece_ids)
        weights.extend([weight] * len(piece_ids))
    if weights:
        weights[0] = 0.0  # the first token is never predicted
    return ids, weights


def build_examples(
    records: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    *,
    max_length: int,
    truncation: str = "right",
) -> tuple[list[TokenizedExample], BuildStats]:
    """Tokenize records into weighted examples.

    ``truncation="right"`` keeps the first ``max_length`` tokens, ``"left"`` the last ones (α-UMi).
    Examples left with no positive-weight token are dropped and counted in the stats.
    Returns ``(examples, stats)``; raises :class:`NoTrainableTokensError` when none is left.
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    stats = BuildStats()
    examples: list[TokenizedExample] = []
    for index, record in enumerate(records):
        stats.n_records += 1
        rid = str(record.get("id", index))
        ids, weights = tokenize_segments(record_segments(record, tokenizer), tokenizer)
        if len(ids) > max_length:
            stats.n_truncated += 1
            stats.truncated_ids.append(rid)
            if truncation == "right":
                ids, weights = ids[:max_length], weights[:max_length]
            else:
                ids, weights = ids[-max_length:], weights[-max_length:]
            weights[0] = 0.0
        example = TokenizedExample(rid, ids, weights)
        if example.n_target_tokens == 0:
            stats.n_empty += 1
            stats.empty_ids.append(rid)
            continue
        examples.append(example)
        stats.n_examples += 1
        stats.n_tokens += len(ids)
        stats.n_target_tokens += example.n_target_tokens
    if not examples:
        raise NoTrainableTokensError(
            f"no training example has a token with positive weight ({stats.summary()}); check "
            "the records' weights (assistant messages default to 1, others to 0) and max_length"
        )
    return examples, stats
