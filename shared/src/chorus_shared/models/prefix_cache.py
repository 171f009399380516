"""A bounded LRU cache of KV prefixes, keyed by token ids, for the transformers backend.

A multi-turn method sends a conversation again with more turns: debate round 2 is the round-1
prompt, the agent's own reply and the other agents' answers. Prefilling that prompt again
recomputes keys and values the model already produced while it generated round 1. This cache
keeps, per finished sequence, the KV of every token it saw (prompt + reply), and hands back the
longest stored prefix of a new prompt's *real* tokenization, so only the suffix is prefilled.
Matching is by token ids, never by text: a reply re-tokenized inside the next prompt may split
differently from the ids the model generated, and the match simply stops there.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass
class PrefixEntry:
    """One cached sequence: its token ids and the KV of each of them.

    ``kv`` has shape ``[layers, 2, kv_heads, len(ids), head_dim]`` (index 0 keys, 1 values).
    """

    ids: Any  # 1-D torch.long tensor
    kv: Any

    @property
    def nbytes(self) -> int:
        """Return the memory this entry holds, in bytes."""
        return int(self.kv.numel() * self.kv.element_size() + self.ids.numel() * 8)


class PrefixCache:
    """LRU cache of KV prefixes bounded by ``max_bytes``.

    ``lookup`` returns the entry sharing the longest token prefix with a prompt;
    ``insert`` stores a finished sequence and evicts least-recently-used entries past the bound.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"prefix cache size must be > 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, PrefixEntry] = OrderedDict()
        self._next_key = 0
        self.nbytes = 0
        # Counters for benchmarks and tests: prompt tokens served from the cache vs prefilled.
        self.hit_tokens = 0
        self.miss_tokens = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: Any) -> tuple[int | None, int]:
        """Return ``(key, length)`` of the entry with the longest common prefix with ``ids``.

        ``(None, 0)`` when nothing matches. The hit entry becomes the most recently used.
        """
        import torch

        best_key, best_len = None, 0
        for key, entry in self._entries.items():
            n = min(len(entry.ids), len(ids))
            if n <= best_len:
                continue
            differ = torch.nonzero(entry.ids[:n] != ids[:n])
            common = int(differ[0, 0]) if len(differ) else n
            if common > best_len:
                best_key, best_len = key, common
        if best_key is not None:
            self._entries.move_to_end(best_key)
        return best_key, best_len

    def get(self, key: int) -> PrefixEntry:
        """Return the entry stored under ``key``."""
        return self._entries[key]

    def discard(self, key: int) -> None:
        """Drop one entry (e.g. one a longer sequence now extends); no-op when absent."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.nbytes -= entry.nbytes

    def insert(self, entry: PrefixEntry) -> int | None:
        """Store ``entry`` as the most recently used; return its key (None if not stored).

        An entry whose ids are a prefix of another's holds nothing the longer one lacks: a new
        entry extending stored ones (round 2 extends round 1) replaces them, and a new entry
        already contained in a stored one is not stored. Entries larger than the bound are not
        stored.
        """
        import torch

        size = entry.nbytes
        if size > self.max_bytes:
            return None
        for key, old in list(self._entries.items()):
            n = min(len(old.ids), len(entry.ids))
            if not torch.equal(old.ids[:n], entry.ids[:n]):
                continue
            if n == len(entry.ids):
                self._entries.move_to_end(key)
                return None
            self.discard(key)
        key = self._next_key
        self._next_key += 1
        self._entries[key] = entry
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes
            self.evictions += 1
        return key

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self.nbytes = 0
