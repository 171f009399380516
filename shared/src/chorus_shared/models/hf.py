"""transformers backend: batched ``generate`` with left padding and length-sorted micro-batches."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from chorus_shared.models.base import (
    ChatTemplateError,
    Completion,
    FinishReason,
    Message,
    SamplingParams,
    model_load_error,
    validate_conversations,
)
from chorus_shared.models.prefix_cache import PrefixCache, PrefixEntry


def _pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Return True when this CPU multiplies bfloat16 natively (AMX-BF16 or AVX-512 BF16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: no cheap, reliable way to tell, so stay on float32
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"amx_bf16", "avx512_bf16"})


# glibc mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_glibc_malloc(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 2**31 - 1) -> bool:
    """Make glibc keep freed memory for reuse; return True when applied (glibc only).

    Generation on CPU frees and re-allocates activation and KV-cache tensors of the same sizes
    every decoding step. By default glibc serves blocks above its mmap threshold with fresh
    ``mmap`` calls and returns freed heap tops to the kernel, so each step page-faults that
    memory in again. Raising the mmap threshold to its 64-bit maximum (32 MiB) and the trim
    threshold keeps those blocks in the heap. Same effect as
    ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.trim_threshold=...`` but
    applicable after start-up.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    return mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok


def _pick_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        # bf16 halves memory and is fast on GPUs and on CPUs with AMX / AVX-512 BF16 (about
        # 3.7x fp32 on a 12 x 1,072-token debate batch, issue 11); elsewhere a CPU emulates
        # bf16 slowly, so float32 stays the default there.
        if device.startswith("cuda") or (device == "cpu" and cpu_has_native_bf16()):
            return torch.bfloat16
        return torch.float32
    try:
        return getattr(torch, dtype)
    except AttributeError:
        raise ValueError(
            f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16"
        ) from None


def _full_attention_only(config: Any) -> bool:
    """Return True when every layer attends to the whole past (no sliding window, no state).

    Stored prefixes are re-inserted as plain per-layer keys/values, which is exact only for
    full-attention layers; other models keep prefilling every prompt.
    """
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    if getattr(text, "sliding_window", None):
        return False
    types = getattr(text, "layer_types", None)
    return not types or all(t == "full_attention" for t in types)


def _is_encoder_decoder(auto_config: Any, source: str, load_kw: dict[str, Any]) -> bool:
    """Return whether ``source`` holds an encoder-decoder model (False when its config is not
    a model's: a PEFT adapter folder loads through the causal class, which reads the adapter)."""
    try:
        config = auto_config.from_pretrained(source, **load_kw)
    except ValueError:
        return False
    return bool(getattr(config, "is_encoder_decoder", False))


class HFChatModel:
    """A chat model run locally through transformers ``generate``.

    Every call renders the conversations with the tokenizer's chat template, sorts them by
    prompt length so each micro-batch wastes little padding, pads on the left (decoder-only
    models continue from the right edge) and reads each reply from the generated token ids
    only, never by splitting decoded text.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        spec: str,
        batch_size: int = 32,
        max_batch_tokens: int = 65536,
        dedupe_greedy: bool = True,
        kv_cache: str = "dynamic",
        prefix_cache_mb: float = 0,
        prefix_min_tokens: int = 16,
        prefix_layout: str = "max",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if kv_cache not in ("dynamic", "static"):
            raise ValueError(f"kv_cache must be 'dynamic' or 'static', got {kv_cache!r}")
        # "static" preallocates the KV cache for prompt + max_new_tokens once per batch instead
        # of growing it every decoding step (the growth re-allocates and page-faults on CPU).
        self.kv_cache = kv_cache
        self.model = model.eval()
        # Encoder-decoder models (T5, BART) read the conversation as plain text: they have no
        # chat template, the encoder takes the prompt and the decoder writes the reply.
        self.encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        # Prefix reuse between calls (off at 0): a bounded LRU of finished sequences' KV, so a
        # prompt that extends an earlier prompt + reply prefills only its new suffix. Prefixes
        # shorter than prefix_min_tokens (e.g. only the chat template's header) are not worth
        # the extra cache copy and are prefilled as usual.
        if prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {prefix_cache_mb}")
        self.prefix_cache: PrefixCache | None = None
        if prefix_cache_mb > 0 and not self.encoder_decoder and _full_attention_only(model.config):
            self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20))
        self.prefix_min_tokens = max(1, prefix_min_tokens)
        if prefix_layout not in ("max", "fit"):
            raise ValueError(f"prefix_layout must be 'max' or 'fit', got {prefix_layout!r}")
        self.prefix_layout = prefix_layout  # see _prefix_width
        self.tokenizer = tokenizer
        self.spec = spec
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.dedupe_greedy = dedupe_greedy
        # A plain LM (no chat template: a base model, or SelFee's raw-prompt checkpoints)
        # loads too; it serves ``complete`` and refuses ``chat`` with a clear error.
        self.has_chat_template = self.encoder_decoder or (
            getattr(tokenizer, "chat_template", None) is not None
        )
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.eos_token_ids = self._eos_ids()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        spec: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        gguf_file: str | None = None,
        attn_implementation: str | None = None,
        **kwargs: Any,
    ) -> HFChatModel:
        """Return a model loaded from a hub id or a local folder (hub token from ``$HF_TOKEN``).

        An encoder-decoder checkpoint (``is_encoder_decoder`` in its config: T5, BART) loads
        with ``AutoModelForSeq2SeqLM``; everything else as a causal LM.
        """
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        device = _pick_device(device)
        source = str(name_or_path)
        load_kw: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        if gguf_file:
            load_kw["gguf_file"] = gguf_file
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **load_kw)
            auto: Any = AutoModelForCausalLM
            if not gguf_file and _is_encoder_decoder(AutoConfig, source, load_kw):
                auto = AutoModelForSeq2SeqLM
            model = auto.from_pretrained(
                source,
                dtype=_pick_dtype(dtype, device),
                attn_implementation=attn_implementation,
                **load_kw,
            )
        except OSError as exc:
            raise model_load_error(source, exc) from exc
        model.to(device)
        return cls(model, tokenizer, spec=spec or f"hf:{source}", **kwargs)

    @classmethod
    def from_default(cls, **kwargs: Any) -> HFChatModel:
        """Return the embedded SmolLM2-135M-Instruct (converted from GGUF, cached on first use)."""
        from chorus_shared.models.embedded import default_model_dir

        return cls.from_pretrained(default_model_dir(), spec="default", **kwargs)

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list | tuple):
                ids.update(int(i) for i in source)
        if not ids:
            raise ChatTemplateError(f"{self.spec} defines no end-of-sequence token")
        return sorted(ids)

    # -- generation --------------------------------------------------------------------------

    def render(self, conversation: list[Message]) -> list[int]:
        """Return the prompt token ids of one conversation, ready for the assistant's turn."""
        if self.encoder_decoder:
            # The messages' contents in order, with the tokenizer's own special tokens (T5's
            # trailing </s>), as the training core's seq2seq path builds the source.
            text = "\n\n".join(m["content"] for m in conversation)
            return self.tokenizer(text)["input_ids"]
        if not self.has_chat_template:
            raise ChatTemplateError(
                f"{self.spec} has no chat template, so it cannot take chat messages: use an "
                "instruction-tuned model whose tokenizer defines one (tokenizer_config.json or "
                "chat_template.jinja), or prompt it with raw text (complete)"
            )
        try:
            text = self.tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja raises TemplateError, templates may raise anything
            roles = ",".join(m["role"] for m in conversation)
            hint = (
                " This model's template does not accept a system message: drop --sys."
                if conversation and conversation[0]["role"] == "system"
                else ""
            )
            raise ChatTemplateError(
                f"the chat template of {self.spec} rejects a conversation with roles "
                f"[{roles}]: {exc}.{hint}"
            ) from exc
        # The template already wrote the special tokens (BOS, role markers).
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
        """Return one completion per conversation, in input order."""
        validate_conversations(conversations)
        return self._run([self.render(c) for c in conversations], params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """Return one continuation per raw text prompt, in input order (no chat template).

        The prompt is tokenized as written, with the tokenizer's own special tokens (a BOS
        where the model uses one), as a plain LM was trained.
        """
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a list of strings")
        return self._run([self.tokenizer(p)["input_ids"] for p in prompts], params)

    def _run(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        import torch

        # Greedy decoding is deterministic, so identical prompts (e.g. every agent's first
        # turn in a debate) are generated once and the reply is shared.
        unique: dict[tuple[int, ...], int] = {}
        source = list(range(len(prompts)))
        if params.greedy and self.dedupe_greedy:
            source = [unique.setdefault(tuple(p), i) for i, p in enumerate(prompts)]
        todo = sorted(set(source))
        results: dict[int, Completion] = {}
        if params.seed is not None:
            torch.manual_seed(params.seed)
        for batch in self._micro_batches([prompts[i] for i in todo], params.max_new_tokens):
            outputs = self._generate([prompts[todo[b]] for b in batch], params)
            for b, completion in zip(batch, outputs, strict=True):
                results[todo[b]] = completion
        return [
            results[j] if j == i else replace(results[j], extra={"shared_with": j})
            for i, j in enumerate(source)
        ]

    def _micro_batches(self, prompts: Sequence[list[int]], max_new: int) -> Iterator[list[int]]:
        # Longest first: similar lengths share a batch (little padding), and the largest
        # batch runs first, so an out-of-memory error shows up at once, not at the end.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
        batch: list[int] = []
        width = 0
        for i in order:
            new_width = max(width, len(prompts[i]) + max_new)
            if batch and (
                len(batch) >= self.batch_size
                or new_width * (len(batch) + 1) > self.max_batch_tokens
            ):
                yield batch
                batch, new_width = [], len(prompts[i]) + max_new
            batch.append(i)
            width = new_width
        if batch:
            yield batch

    def _generation_config(
        self, params: SamplingParams, static: bool, return_cache: bool = False
    ) -> Any:
        from transformers import GenerationConfig

        # A fresh config: decoding is exactly what the recipe says, not a checkpoint's defaults.
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            temperature=None if params.greedy else params.temperature,
            top_p=None if params.greedy else params.top_p,
            top_k=None,
            min_p=None if params.greedy or params.min_p == 0.0 else params.min_p,
            repetition_penalty=(
                None if params.repetition_penalty == 1.0 else params.repetition_penalty
            ),
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_ids,
            stop_strings=list(params.stop) or None,
            cache_implementation="static" if static else None,
            # The prefix cache reads the KV of the finished batch from generate's output.
            return_dict_in_generate=return_cache,
        )
        if self.encoder_decoder:
            start = self.model.generation_config.decoder_start_token_id
            config.decoder_start_token_id = (
                start if start is not None else self.model.config.decoder_start_token_id
            )
        return config

    def _generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        if self.prefix_cache is not None:
            return self._generate_reusing(prompts, params, self.prefix_cache)
        import torch

        device = self.model.device
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            # An encoder reads its whole input at once: pad on the right, as in training.
            at = 0 if self.encoder_decoder else width - len(ids)
            input_ids[row, at : at + len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[row, at : at + len(ids)] = 1
        config = self._generation_config(params, static=self.kv_cache == "static")
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                tokenizer=self.tokenizer if params.stop else None,
            )
        # A decoder-only output repeats the prompt; an encoder-decoder's starts with the
        # decoder start token.
        generated = (out[:, 1:] if self.encoder_decoder else out[:, width:]).tolist()
        return [
            self._completion(tokens, len(prompt), params)
            for tokens, prompt in zip(generated, prompts, strict=True)
        ]

    def _generate_reusing(
        self, prompts: list[list[int]], params: SamplingParams, store: PrefixCache
    ) -> list[Completion]:
        """``_generate`` that starts each row from its longest stored KV prefix.

        Layout of the batch (``P`` = longest reused prefix, ``S`` = longest suffix): row ``r``
        holds its ``m_r`` reused tokens right-aligned in columns ``[P - m_r, P)`` (their KV goes
        in as ``past_key_values``) and its ``s_r`` new tokens right-aligned in ``[P + S - s_r,
        P + S)``; the columns between are padding with attention mask 0. ``generate`` derives
        position ids from the mask's cumulative sum, so every real token keeps the position it
        has in the unpadded prompt, and it prefills only the last ``S`` columns.
        """
        import torch
        from transformers import DynamicCache, StaticCache

        device = self.model.device
        ids = [torch.tensor(p, dtype=torch.long) for p in prompts]
        hits: list[tuple[PrefixEntry | None, int]] = []
        for row in ids:
            key, m = store.lookup(row)
            m = min(m, len(row) - 1)  # at least one new token: its logits start the reply
            if key is None or m < self.prefix_min_tokens:
                hits.append((None, 0))
            else:
                hits.append((store.get(key), m))
        P = self._prefix_width([len(r) for r in ids], [m for _, m in hits])
        hits = [(e, min(m, P)) if min(m, P) > 0 else (None, 0) for e, m in hits]
        S = max(len(r) - m for r, (_, m) in zip(ids, hits, strict=True))
        store.hit_tokens += sum(m for _, m in hits)
        store.miss_tokens += sum(len(r) - m for r, (_, m) in zip(ids, hits, strict=True))
        width = P + S
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(ids), width), dtype=torch.long)
        for r, (row, (_, m)) in enumerate(zip(ids, hits, strict=True)):
            s = len(row) - m
            input_ids[r, P - m : P] = row[:m]
            attention[r, P - m : P] = 1
            input_ids[r, width - s :] = row[m:]
            attention[r, width - s :] = 1

        static = self.kv_cache == "static"
        kwargs: dict[str, Any] = {}
        if P > 0:
            past = self._stacked_prefix(hits, P)
            n_layers = past.shape[0]
            cache: Any = (
                StaticCache(config=self.model.config, max_cache_len=width + params.max_new_tokens)
                if static
                else DynamicCache(config=self.model.config)
            )
            for layer in range(n_layers):
                cache.update(past[layer, 0].to(device), past[layer, 1].to(device), layer)
            del past
            kwargs["past_key_values"] = cache
            static = False  # the cache object above is already the one to fill
        config = self._generation_config(params, static=static, return_cache=True)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                tokenizer=self.tokenizer if params.stop else None,
                **kwargs,
            )
        sequences = out.sequences.cpu()
        generated = sequences[:, width:].tolist()
        completions = [
            self._completion(tokens, len(prompt), params)
            for tokens, prompt in zip(generated, prompts, strict=True)
        ]
        self._store_prefixes(store, out.past_key_values, sequences, ids, hits, P, completions)
        return completions

    def _prefix_width(self, lengths: list[int], reused: list[int]) -> int:
        """Return ``P``, the reused columns of the batch; a row reuses ``min(m_r, P)`` tokens.

        "max" reuses every row's whole stored prefix; the batch is then ``max(m) +
        max(len - m)`` wide, wider than the plain batch when the rows' splits differ, and
        every decoding step attends over that width. "fit" takes the largest ``P`` that keeps
        the batch exactly as wide as the plain one (``max(len)``), so no step does more work
        than without reuse, at the price of reusing less in rows with a short prefix.
        """
        if self.prefix_layout == "max" or not any(reused):
            return max(reused)
        longest = max(lengths)
        return max(
            0, min(min(m + longest - n for n, m in zip(lengths, reused, strict=True)), max(reused))
        )

    def _stacked_prefix(self, hits: list[tuple[PrefixEntry | None, int]], width: int) -> Any:
        """Return each row's reused KV right-aligned: ``[layers, 2, batch, heads, width, dim]``."""
        import torch

        sample = next(e.kv for e, _ in hits if e is not None)
        n_layers, _, heads, _, dim = sample.shape
        past = torch.zeros(
            (n_layers, 2, len(hits), heads, width, dim), dtype=sample.dtype, device=sample.device
        )
        for r, (entry, m) in enumerate(hits):
            if entry is not None:
                past[:, :, r, :, width - m :] = entry.kv[:, :, :, :m]
        return past

    def _store_prefixes(
        self,
        store: PrefixCache,
        cache: Any,
        sequences: Any,
        ids: list[Any],
        hits: list[tuple[PrefixEntry | None, int]],
        P: int,
        completions: list[Completion],
    ) -> None:
        """Store each row's prompt + reply tokens whose KV the cache holds."""
        import torch

        if cache is None or not getattr(cache, "layers", None):
            return
        filled = int(cache.get_seq_length())  # the last sampled token was never fed back
        S = max(len(row) - m for row, (_, m) in zip(ids, hits, strict=True))
        start = P + S  # first generated column
        for r, (row, (_, m)) in enumerate(zip(ids, hits, strict=True)):
            n_gen = max(0, min(filled - start, completions[r].completion_tokens))
            s = len(row) - m
            cols = torch.cat(
                [
                    torch.arange(P - m, P),
                    torch.arange(start - s, start),
                    torch.arange(start, start + n_gen),
                ]
            )
            # KV of a token is correct for any prefix of the stored ids (attention is causal),
            # so tokens after an end-of-sequence or a stop string do no harm: they only match
            # a later prompt that really contains them.
            seq_ids = torch.cat([row, sequences[r, start : start + n_gen]])
            first = cache.layers[0].keys
            kv = torch.empty(
                (len(cache.layers), 2, first.shape[1], len(cols), first.shape[3]),
                dtype=first.dtype,
                device=first.device,
            )
            index = cols.to(first.device)
            for layer, lay in enumerate(cache.layers):
                kv[layer, 0] = lay.keys[r].index_select(1, index)
                kv[layer, 1] = lay.values[r].index_select(1, index)
            store.insert(PrefixEntry(ids=seq_ids, kv=kv))

    def _completion(self, tokens: list[int], n_prompt: int, params: SamplingParams) -> Completion:
        finish: FinishReason = "length"
        eos = set(self.eos_token_ids)
        for k, t in enumerate(tokens):
            if t in eos:
                tokens, finish = tokens[: k + 1], "stop"
                break
        text = self.tokenizer.decode([t for t in tokens if t not in eos], skip_special_tokens=True)
        cut = min((p for p in (text.find(s) for s in params.stop) if p >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        return Completion(
            text=text.strip(),
            prompt_tokens=n_prompt,
            completion_tokens=len(tokens),
            finish_reason=finish,
        )
