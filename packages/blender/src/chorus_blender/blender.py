"""``Blender``: the original package's Python API, over our batched engine.

Users of ``llm_blender.Blender`` keep their code::

    from chorus_blender import Blender
    blender = Blender()
    blender.loadranker("llm-blender/PairRM")           # or a local folder, either layout
    ranks = blender.rank(inputs, candidates, return_scores=False, batch_size=8)
    better = blender.compare(inputs, candidates_A, candidates_B)
    fused = blender.fuse(inputs, topk_candidates)      # after loadfuser(...)

Method names, argument names and return shapes follow the original (NumPy arrays where it
returns arrays). Every call sends all pairs of all inputs through one batched, length-sorted
pass (:meth:`PairRanker.pair_logits`) instead of the original's one forward per pair.
Differences, on purpose: ``get_best_of_n(..., return_all=True)`` with bubble orders the rest
by the full ranking; the bubble pass visits a seeded random order per input (the original
draws one permutation per batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chorus_blender import ranking
from chorus_blender.fuser import Seq2SeqGenFuser, fuse_completions, load_fuser
from chorus_blender.ranker import PairRanker

# The original's instruction for compare_conversations (its wording, typo included: the
# released PairRM reads this text).
CONVERSATION_INSTRUCTION = (
    "Finish the following coversation in each i-th turn by filling in <Response i> with your "
    "response."
)
COMPARE_MODES = ("[A,B]", "[B,A]", "[A,B]+[B,A]")


class Blender:
    """PairRanker + GenFuser with the original ``llm_blender.Blender`` interface."""

    def __init__(self, seed: int = 0) -> None:
        self.ranker: PairRanker | None = None
        self.fuser: Any = None
        self.seed = seed

    # -- loading --------------------------------------------------------------------------
    def loadranker(self, ranker_path: str, device: str | None = None, **kwargs: Any) -> None:
        """Load a PairRanker checkpoint (folder or hub id; PairRM or PairRM-hf layout).

        ``kwargs``: ``source_maxlength`` / ``candidate_maxlength`` (the original's names) or
        our budget names, and ``precision`` (default: the original's).
        """
        names = {
            "source_maxlength": "source_max_length",
            "candidate_maxlength": "candidate_max_length",
        }
        precision = kwargs.pop("precision", "original")
        budgets = {names.get(k, k): int(v) for k, v in kwargs.items()}
        ranker = PairRanker.from_pretrained(ranker_path, **budgets)
        if device is not None:
            ranker = ranker.to(device)
        ranker.default_precision = precision
        self.ranker = ranker

    def loadfuser(self, fuser_path: str, device: str | None = None, **kwargs: Any) -> None:
        """Load the fuser: a seq2seq folder or hub id (the original's GenFuser, beam search),
        or any chorus chat-model spec (``default``, ``hf:...``, ``openai:...``)."""
        if fuser_path == "default" or fuser_path.split(":", 1)[0] in (
            "hf", "vllm", "openai", "seq2seq",
        ):  # fmt: skip
            self.fuser = load_fuser(fuser_path)
        else:
            self.fuser = Seq2SeqGenFuser.from_pretrained(fuser_path, **kwargs)
            if device is not None:
                self.fuser.model.to(device)

    def _ranker(self) -> PairRanker:
        if self.ranker is None:
            raise RuntimeError("no ranker loaded: call loadranker(...) first")
        return self.ranker

    # -- ranking ----------------------------------------------------------------------------
    def rank(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        return_scores: bool = False,
        batch_size: int = 8,
        **rank_kwargs: Any,
    ) -> np.ndarray:
        """Return ranks (n, c), 1 = best, ties sharing the best rank; or scores (higher is
        better: the mean over all c columns of ``M - M.T``) with ``return_scores``."""
        out = ranking.rank(
            self._ranker(),
            inputs,
            candidates,
            instructions,
            return_scores=return_scores,  # type: ignore[call-overload]
            batch_size=batch_size,
            **rank_kwargs,
        )
        return np.array(out, dtype=np.float32 if return_scores else np.int32)

    def rank_with_ref(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        return_scores: bool = False,
        batch_size: int = 8,
        ref_mode: str = "longest",
        ref_candidates: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Return ranks against a reference, or with ``return_scores`` the rewards
        ``l(c, ref) - l(ref, c)`` (n, c)."""
        out = ranking.rank_with_ref(
            self._ranker(),
            inputs,
            candidates,
            instructions,
            return_scores=return_scores,  # type: ignore[call-overload]
            ref_mode=ref_mode,
            ref_candidates=ref_candidates,
            batch_size=batch_size,
        )
        return np.array(out, dtype=np.float32 if return_scores else np.int32)

    def compare(
        self,
        inputs: Sequence[str],
        candidates_A: Sequence[str],
        candidates_B: Sequence[str],
        instructions: Sequence[str] | None = None,
        batch_size: int = 8,
        return_logits: bool = False,
        mode: str = "[A,B]+[B,A]",
    ) -> np.ndarray:
        """Return, per input, whether A is better (bools) or the logit (``return_logits``).

        ``mode``: ``[A,B]+[B,A]`` (default; ``l(A,B) - l(B,A)``), ``[A,B]`` (``l(A,B)``) or
        ``[B,A]`` (``l(B,A)``, the original's one-order swap, returned as it is).
        """
        if mode not in COMPARE_MODES:
            raise ValueError(f"mode must be one of {COMPARE_MODES}, got {mode!r}")
        if not len(inputs) == len(candidates_A) == len(candidates_B):
            raise ValueError("inputs, candidates_A and candidates_B must have the same length")
        if mode == "[A,B]+[B,A]":
            logits = ranking.compare(
                self._ranker(),
                inputs,
                candidates_A,
                candidates_B,
                instructions,
                return_logits=True,
                batch_size=batch_size,
            )
        else:
            sources = ranking._sources(inputs, instructions)
            first, second = (
                (candidates_A, candidates_B) if mode == "[A,B]" else (candidates_B, candidates_A)
            )
            logits = self._ranker().pair_logits(sources, first, second, batch_size=batch_size)
        values = np.array(logits, dtype=np.float32)
        return values if return_logits else values > 0

    def compare_conversations(
        self,
        conversations_a: Sequence[Sequence[Mapping[str, str]]],
        conversations_b: Sequence[Sequence[Mapping[str, str]]],
        batch_size: int = 4,
        return_logits: bool = False,
        mode: str = "[A,B]+[B,A]",
    ) -> np.ndarray:
        """Compare two multi-turn conversations with the same user turns, as the original:
        the user turns become the input, each side's replies a numbered candidate."""
        if len(conversations_a) != len(conversations_b):
            raise ValueError("give as many conversations_a as conversations_b")
        for a, b in zip(conversations_a, conversations_b, strict=True):
            for conv in (a, b):
                roles = [str(t["role"]).lower() for t in conv]
                if len(conv) % 2 or any(
                    r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(roles)
                ):
                    raise ValueError("each conversation must alternate USER and ASSISTANT turns")
            if len(a) != len(b) or any(
                a[i]["content"] != b[i]["content"] for i in range(0, len(a), 2)
            ):
                raise ValueError("paired conversations must have the same USER turns")
        inputs = [
            "\n".join(
                "USER: " + conv[i]["content"] + f"\nAssistant: <Response {i // 2 + 1}>"
                for i in range(0, len(conv), 2)
            )
            for conv in conversations_a
        ]

        def replies(conv: Sequence[Mapping[str, str]]) -> str:
            return "\n".join(
                f"<Response {i // 2 + 1}>: " + conv[i]["content"] for i in range(1, len(conv), 2)
            )

        return self.compare(
            inputs,
            [replies(c) for c in conversations_a],
            [replies(c) for c in conversations_b],
            [CONVERSATION_INSTRUCTION] * len(inputs),
            batch_size=batch_size,
            return_logits=return_logits,
            mode=mode,
        )

    def _extreme_of_n(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None,
        pairrm_cmp_type: str,
        return_all: bool,
        batch_size: int,
        worst: bool,
    ) -> list[str] | list[list[str]]:
        if pairrm_cmp_type not in ("bubble", "full"):
            raise ValueError("pairrm_cmp_type must be 'bubble' or 'full'")
        if all(len(c) == 1 for c in candidates):
            return [list(c) for c in candidates] if return_all else [c[0] for c in candidates]
        sources = ranking._sources(inputs, instructions)
        scores = ranking.rank(
            self._ranker(), sources, candidates, return_scores=True, batch_size=batch_size
        ) if return_all or pairrm_cmp_type == "full" else None  # fmt: skip
        if pairrm_cmp_type == "bubble":
            picks = ranking.bubble_best(
                self._ranker(),
                sources,
                candidates,
                seed=self.seed,
                worst=worst,
                batch_size=batch_size,
            )
        else:
            assert scores is not None
            picks = [
                int(np.argmin(s)) if worst else int(np.argmax(s)) for s in scores
            ]  # first of ties
        if not return_all:
            return [c[p] for c, p in zip(candidates, picks, strict=True)]
        assert scores is not None
        out = []
        for cands, pick, s in zip(candidates, picks, scores, strict=True):
            rest = sorted((j for j in range(len(cands)) if j != pick), key=lambda j: s[j])
            out.append([cands[pick]] + [cands[j] for j in (rest if worst else rest[::-1])])
        return out

    def get_best_of_n(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        batch_size: int = 8,
    ) -> list[str] | list[list[str]]:
        """Return the best candidate per input (``return_all``: all, best first)."""
        return self._extreme_of_n(
            inputs, candidates, instructions, pairrm_cmp_type, return_all, batch_size, False
        )

    def get_worst_of_n(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        batch_size: int = 8,
    ) -> list[str] | list[list[str]]:
        """Return the worst candidate per input (``return_all``: all, worst first)."""
        return self._extreme_of_n(
            inputs, candidates, instructions, pairrm_cmp_type, return_all, batch_size, True
        )

    # -- fusion and generation -----------------------------------------------------------
    def fuse(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        batch_size: int = 4,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Return one fused answer per input from its (top-ranked) candidates, in the original
        GenFuser's input format (candidates cut to ``candidate_max_length`` tokens, 128)."""
        if self.fuser is None:
            raise RuntimeError("no fuser loaded: call loadfuser(...) first")
        from chorus_shared.models import SamplingParams

        cut = int(generate_kwargs.pop("candidate_max_length", 128))
        budget = int(generate_kwargs.pop("max_new_tokens", cut))
        if isinstance(self.fuser, Seq2SeqGenFuser):
            self.fuser.batch_size = batch_size
        replies = fuse_completions(
            self.fuser,
            list(instructions) if instructions is not None else [""] * len(inputs),
            candidates,
            SamplingParams(max_new_tokens=budget),
            inputs=inputs,
            candidate_max_tokens=cut if getattr(self.fuser, "tokenizer", None) else None,
            fuse_format="genfuser",
        )
        return [r.text if r.error is None else "" for r in replies]

    def n_generate(
        self,
        model: Any,
        model_tokenizer: Any,
        inputs: Sequence[str],
        instructions: Sequence[str] | None = None,
        n: int = 5,
        sampling_mode: str | None = "top_p_sampling",
        batch_size: int = 4,
        **generate_kwargs: Any,
    ) -> list[list[str]]:
        """Return ``n`` sampled generations per input from a Hugging Face model (or a chorus
        ChatModel, then ``model_tokenizer`` is unused); prompts are instruction + "\\n" +
        input, as the original. ``sampling_mode``: top_p_sampling (top_p 1.0), top_k_sampling
        (top_k 50), both at temperature 0.7 unless given, or None (``generate_kwargs`` only).
        """
        if n < 1:
            raise ValueError("n must be >= 1")
        kwargs = dict(generate_kwargs)
        if sampling_mode == "top_k_sampling":
            kwargs.update(do_sample=True, top_k=kwargs.get("top_k", 50))
            kwargs["temperature"] = kwargs.get("temperature", 0.7)
        elif sampling_mode == "top_p_sampling":
            kwargs.update(do_sample=True, top_p=kwargs.get("top_p", 1.0))
            kwargs["temperature"] = kwargs.get("temperature", 0.7)
        elif sampling_mode is not None:
            raise ValueError(f"unknown sampling_mode {sampling_mode!r}")
        prompts = (
            [f"{i}\n{x}" for i, x in zip(instructions, inputs, strict=True)]
            if instructions is not None
            else list(inputs)
        )
        if hasattr(model, "chat"):
            from chorus_shared.models import SamplingParams

            params = SamplingParams(
                max_new_tokens=int(kwargs.get("max_new_tokens", 256)),
                temperature=float(kwargs.get("temperature", 0.7)),
                top_p=float(kwargs.get("top_p", 1.0)),
                seed=self.seed,
            )
            conversations = [[{"role": "user", "content": p}] for p in prompts for _ in range(n)]
            replies = model.chat(conversations, params)
            texts = [r.text if r.error is None else "" for r in replies]
            return [texts[k * n : (k + 1) * n] for k in range(len(prompts))]
        import torch

        kwargs["num_return_sequences"] = n
        if "max_new_tokens" not in kwargs:
            kwargs["max_length"] = kwargs.get("max_length", model_tokenizer.model_max_length)
        out: list[list[str]] = []
        for start in range(0, len(prompts), batch_size):
            enc = model_tokenizer(
                prompts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
            )
            enc = {k: v.to(model.device) for k, v in enc.items()}
            with torch.inference_mode():
                ids = model.generate(**enc, **kwargs)
            if not getattr(model.config, "is_encoder_decoder", False):
                ids = ids[:, enc["input_ids"].shape[1] :]  # decoder-only: drop the prompt
            texts = model_tokenizer.batch_decode(ids, skip_special_tokens=True)
            out += [texts[k : k + n] for k in range(0, len(texts), n)]
        return out

    def best_of_n_generate(
        self,
        model: Any,
        model_tokenizer: Any,
        inputs: Sequence[str],
        instructions: Sequence[str] | None = None,
        n: int = 5,
        sampling_mode: str | None = "top_p_sampling",
        batch_size: int = 4,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        **generate_kwargs: Any,
    ) -> list[str] | list[list[str]]:
        """Sample ``n`` generations per input (:meth:`n_generate`) and return the best."""
        samples = self.n_generate(
            model, model_tokenizer, inputs, instructions, n, sampling_mode, batch_size,
            **generate_kwargs,
        )  # fmt: skip
        return self.get_best_of_n(
            inputs, samples, instructions, pairrm_cmp_type=pairrm_cmp_type, return_all=return_all
        )

    def rank_and_fuse(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        return_scores: bool = False,
        batch_size: int = 4,
        top_k: int = 3,
        **generate_kwargs: Any,
    ) -> tuple[list[str], np.ndarray]:
        """Rank, keep each input's top ``top_k``, fuse them; return (fused, ranks or scores)."""
        result = self.rank(
            inputs, candidates, instructions, return_scores=return_scores, batch_size=batch_size
        )
        ranks = [ranking.ranks_from_scores(s) for s in result] if return_scores else result.tolist()
        topk = ranking.get_topk_candidates_from_ranks(ranks, candidates, top_k)
        fused = self.fuse(inputs, topk, instructions, batch_size=batch_size, **generate_kwargs)
        return fused, result
