"""The loop's verifier and improver: scripted (arithmetic, word sorting) or LLMs (any task).

LLM helpers are few-shot: each demonstration is a training item whose ground-truth rationale
has one planted error (``loop.plant_error``), with its feedback and its repair. For the
scripted tasks the feedback and repair come from the scripted verifier and improver; for the
multiple-choice tasks (no script) the feedback names the first step that differs from the
ground truth (``verifier.diff_feedback``) and the repair is the ground truth itself. One
demonstration of the verifier is a right rationale with the all-correct feedback.
"""

from __future__ import annotations

import random

from chorus_shared.models import load_chat_model
from chorus_shared.models.base import ChatModel
from chorus_tripost import loop, tasks
from chorus_tripost.improver import LLMImprover
from chorus_tripost.improver import improve as scripted_improve
from chorus_tripost.recipes import Recipe
from chorus_tripost.verifier import AnswerCheckedVerifier, LLMVerifier, diff_feedback, verify

__all__ = ["helper_demos", "llm_helpers", "make_helpers", "pick_demos"]


def helper_demos(
    demos: list[dict], *, seed: int = 0
) -> tuple[list[tuple[dict, str, str]], list[tuple[dict, str, str, str]]]:
    """Return (verifier demonstrations ``(item, rationale, feedback)``, improver
    demonstrations ``(item, wrong, feedback, improved)``) from training items."""
    rng = random.Random(seed)
    planted = [(d, loop.plant_error(d, rng)) for d in demos]
    ver, imp = [], []
    for d, wrong in planted:
        if d["task"] in tasks.SCRIPTED_TASKS:
            v = verify(d, wrong)
            ver.append((d, wrong, v.feedback))
            imp.append((d, wrong, v.feedback, scripted_improve(d, wrong, v)))
        else:
            v = diff_feedback(wrong, d["rationale"])
            ver.append((d, wrong, v.feedback))
            imp.append((d, wrong, v.feedback, d["rationale"]))
    for d in demos[:1]:
        right = (
            verify(d, d["rationale"])
            if d["task"] in tasks.SCRIPTED_TASKS
            else diff_feedback(d["rationale"], d["rationale"])
        )
        ver.append((d, d["rationale"], right.feedback))
    return ver, imp


def pick_demos(train_items: list[dict], k: int = 2, *, seed: int = 0) -> list[dict]:
    """Return ``k`` training items (seeded) whose ground-truth rationale reads as right."""
    usable = [
        it for it in train_items
        if it.get("rationale") and tasks.answer_of(it, it["rationale"]) == _norm(it["answer"])
    ]  # fmt: skip
    if len(usable) < k:
        raise ValueError(f"need {k} training items with a right rationale for demonstrations")
    return random.Random(seed).sample(usable, k)


def llm_helpers(
    verifier_model: ChatModel,
    improver_model: ChatModel,
    demos: list[dict],
    *,
    seed: int = 0,
    check_answers: bool = True,
    max_new_tokens: int = 512,
) -> tuple[loop.Verifier, loop.Improver]:
    """Return (verifier, improver) callables backed by two ChatModels, few-shot with
    demonstrations made from ``demos`` (training items, :func:`helper_demos`).

    ``check_answers``: for the multiple-choice tasks an LLM "all correct" also needs the gold
    answer (:class:`AnswerCheckedVerifier`), so no trajectory ends on a wrong answer.
    """
    ver_demos, imp_demos = helper_demos(demos, seed=seed)
    llm = LLMVerifier(verifier_model, ver_demos, max_new_tokens=max_new_tokens)
    verifier: loop.Verifier = llm
    if check_answers and demos and demos[0]["task"] in tasks.MC_TASKS:
        verifier = AnswerCheckedVerifier(llm)
    # Test-time and check-helper use: greedy, so a measurement does not depend on sampling.
    improver = LLMImprover(
        improver_model, imp_demos, max_new_tokens=max_new_tokens, temperature=0.0
    )
    return verifier, improver


def _norm(answer: str) -> str:
    return " ".join(answer.strip().rstrip(".").split())


def make_helpers(recipe: Recipe, train_items: list[dict]) -> tuple[loop.Verifier, loop.Improver]:
    """Return the recipe's (verifier, improver): each the scripted one or an LLM loaded from
    ``verifier_model`` / ``improver_model`` (one model when both specs are equal), few-shot with
    demonstrations drawn from ``train_items``; the LLM improver samples at
    ``improver_temperature`` (the original: 0.7)."""
    verify: loop.Verifier = loop.scripted_verifier
    improve: loop.Improver = loop.scripted_improver
    if recipe.verifier_use_scripted and recipe.improver_use_scripted:
        return verify, improve
    cache: dict[str, ChatModel] = {}

    def model(spec: str | None) -> ChatModel:
        if not spec:
            raise ValueError(
                "an LLM helper needs its ChatModel spec (verifier_model / improver_model)"
            )
        if spec not in cache:
            cache[spec] = load_chat_model(spec)
        return cache[spec]

    demos = pick_demos(train_items, 2, seed=recipe.seed)
    ver_demos, imp_demos = helper_demos(demos, seed=recipe.seed)
    if not recipe.verifier_use_scripted:
        llm = LLMVerifier(
            model(recipe.verifier_model), ver_demos, max_new_tokens=recipe.helper_max_new_tokens
        )
        verify = AnswerCheckedVerifier(llm) if recipe.task in tasks.MC_TASKS else llm
    if not recipe.improver_use_scripted:
        improve = LLMImprover(
            model(recipe.improver_model),
            imp_demos,
            max_new_tokens=recipe.helper_max_new_tokens,
            temperature=recipe.improver_temperature,
            seed=recipe.seed,
        )
    return verify, improve


def load_helper_models(recipe: Recipe) -> tuple[ChatModel, ChatModel]:
    """Return the recipe's LLM (verifier, improver) chat models, loaded from ``verifier_model``
    / ``improver_model`` (one model when both specs are equal)."""
    if not (recipe.verifier_model and recipe.improver_model):
        raise ValueError(
            "LLM helpers need both verifier_model and improver_model (ChatModel specs, e.g. "
            "openai:gpt-4o or hf:<id>)"
        )
    vmodel = load_chat_model(recipe.verifier_model)
    imodel = (
        vmodel
        if recipe.improver_model == recipe.verifier_model
        else load_chat_model(recipe.improver_model)
    )
    return vmodel, imodel
