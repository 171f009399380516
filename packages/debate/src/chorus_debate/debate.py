"""The debate engine: every agent of every question in flight is generated in one batch.

For a window of items the engine keeps one chat history per (item, agent). Each round it
sends all histories that belong to the same model in a single ``chat`` call (the backend
micro-batches them), appends the replies, and parses the answers. Later rounds add a user
turn built from the other agents' answers (debate), a summary of them (``--summarize``), or
the agent's own answer (self-reflection).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from chorus_debate.judge import judge_biographies
from chorus_debate.methods import MethodPlan
from chorus_debate.records import AgentLog, DebateRecord, JudgeLog, Usage
from chorus_debate.tasks import Item, Task
from chorus_shared.models import ChatModel, Completion, Message, SamplingParams

DEBATE_PROMPT = (
    "Here are the latest answers of the other agents to the same task:\n\n{others}\n\n"
    "Use them as extra advice, not as the truth: check their reasoning and yours. "
    "Then give your updated answer.\n\nThe task was: {task}"
)
SUMMARY_DEBATE_PROMPT = (
    "Here is a summary of the other agents' latest answers to the same task:\n\n{summary}\n\n"
    "Use it as extra advice, not as the truth: check the reasoning yourself. "
    "Then give your updated answer.\n\nThe task was: {task}"
)
SUMMARIZE_PROMPT = (
    "Several agents answered the same task.\n\n{others}\n\n"
    "Summarize their reasoning and the answers they reached in a few sentences. "
    "Say where they agree and where they disagree."
)
REFLECTION_PROMPT = (
    "Look again at your answer above. Check every step for mistakes and correct any you "
    "find. Then give your final answer.\n\nThe task was: {task}"
)
# Other agents are shown anonymously, as in the paper: no numbers, no names.
OTHER_AGENT = 'One agent answered:\n"""\n{text}\n"""'


@dataclass(frozen=True)
class DebateSetup:
    """Everything that decides what the engine generates."""

    plan: MethodPlan
    params: SamplingParams
    summarize: bool = False
    system: str | None = None
    judge_params: SamplingParams = field(
        default_factory=lambda: SamplingParams(max_new_tokens=8, temperature=0.0)
    )


class DebateEngine:
    """Runs one method of the paper on windows of items; returns one record per item."""

    def __init__(
        self,
        task: Task,
        agents: Sequence[ChatModel],
        setup: DebateSetup,
        *,
        summarizer: ChatModel | None = None,
        judge: ChatModel | None = None,
    ) -> None:
        if len(agents) != setup.plan.agents:
            raise ValueError(f"{setup.plan.agents} agents planned but {len(agents)} models given")
        if task.judged and judge is None:
            raise ValueError(f"task {task.name} is graded by a judge: pass a judge model")
        self.task = task
        self.agents = list(agents)
        self.setup = setup
        self.summarizer = summarizer or self.agents[0]
        self.judge = judge

    # -- one window --------------------------------------------------------------------------

    def run(self, items: Sequence[Item]) -> list[DebateRecord]:
        """Return one record per item (see records.py); all agents of all items share each
        batch. Records hold the replies only: evaluate.py grades them."""
        plan, task = self.setup.plan, self.task
        params = self._window_params(items)
        n_agents = plan.agents
        prompts = [task.first_prompt(item) for item in items]
        histories = [[self._opening(prompt) for _ in range(n_agents)] for prompt in prompts]
        replies: list[list[list[Completion]]] = [[] for _ in items]  # [item][round][agent]
        summaries: list[list[list[str]]] = [[] for _ in items]
        # Items still debating: an item stops when an agent declines (the paper's biographies).
        active = list(range(len(items)))

        for round_ in range(plan.rounds):
            if not active:
                break
            if round_ > 0:
                feedback = self._feedback(
                    [prompts[i] for i in active],
                    [replies[i] for i in active],
                    [summaries[i] for i in active],
                    params,
                    last=round_ == plan.rounds - 1,
                )
                for i, per_agent in zip(active, feedback, strict=True):
                    for a, message in enumerate(per_agent):
                        histories[i][a].append({"role": "user", "content": message})
            flat = [(i, a) for i in active for a in range(n_agents)]
            completions = self._chat_by_model(
                [histories[i][a] for i, a in flat], [self.agents[a] for _, a in flat], params
            )
            for i in active:
                replies[i].append([])
            for (i, a), completion in zip(flat, completions, strict=True):
                histories[i][a].append({"role": "assistant", "content": completion.text})
                replies[i][round_].append(completion)
            if task.declines is not None:
                active = [
                    i for i in active if not any(task.declines(c.text) for c in replies[i][-1])
                ]

        records = [
            self._record(item, histories[i], replies[i], summaries[i])
            for i, item in enumerate(items)
        ]
        if task.judged:
            records = self._judge(items, replies, records)
        return records

    def _window_params(self, items: Sequence[Item]) -> SamplingParams:
        # A window's sampling seed depends on its first item, so a resumed run draws the same
        # numbers for a window as an uninterrupted one would.
        if self.setup.params.seed is None or not items:
            return self.setup.params
        salt = zlib.crc32(str(items[0]["id"]).encode())
        return replace(self.setup.params, seed=(self.setup.params.seed * 1_000_003 + salt) % 2**31)

    def _opening(self, prompt: str) -> list[Message]:
        opening: list[Message] = []
        if self.setup.system:
            opening.append({"role": "system", "content": self.setup.system})
        opening.append({"role": "user", "content": prompt})
        return opening

    def _feedback(
        self,
        prompts: list[str],
        replies: list[list[list[Completion]]],
        summaries: list[list[list[str]]],
        params: SamplingParams,
        *,
        last: bool = False,
    ) -> list[list[str]]:
        """Return the next user turn of every (item, agent); ``last`` marks the final round."""
        plan = self.setup.plan
        hint = f"\n\n{self.task.last_round_hint}" if last and self.task.last_round_hint else ""
        if plan.feedback == "self":
            return [[REFLECTION_PROMPT.format(task=p) for _ in range(plan.agents)] for p in prompts]
        others = [
            [
                "\n\n".join(
                    OTHER_AGENT.format(text=replies[i][-1][b].text or "(no answer)")
                    for b in range(plan.agents)
                    if b != a
                )
                for a in range(plan.agents)
            ]
            for i in range(len(prompts))
        ]
        if not self.setup.summarize:
            return [
                [DEBATE_PROMPT.format(others=o, task=p) + hint for o in per]
                for p, per in zip(prompts, others, strict=True)
            ]
        conversations: list[list[Message]] = [
            [{"role": "user", "content": SUMMARIZE_PROMPT.format(others=o)}]
            for per in others
            for o in per
        ]
        texts = iter(c.text for c in self.summarizer.chat(conversations, params))
        feedback = []
        for i, p in enumerate(prompts):
            round_summaries = [next(texts) for _ in range(plan.agents)]
            summaries[i].append(round_summaries)
            feedback.append(
                [SUMMARY_DEBATE_PROMPT.format(summary=s, task=p) + hint for s in round_summaries]
            )
        return feedback

    def _chat_by_model(
        self,
        conversations: list[list[Message]],
        owners: list[ChatModel],
        params: SamplingParams,
    ) -> list[Completion]:
        """Return completions in order, with one batched call per distinct model."""
        results: list[Completion | None] = [None] * len(conversations)
        groups: dict[int, list[int]] = {}
        for k, model in enumerate(owners):
            groups.setdefault(id(model), []).append(k)
        for indices in groups.values():
            model = owners[indices[0]]
            for k, completion in zip(
                indices, model.chat([conversations[k] for k in indices], params), strict=True
            ):
                results[k] = completion
        return [r for r in results if r is not None]

    # -- records -----------------------------------------------------------------------------

    def _record(
        self,
        item: Item,
        histories: list[list[Message]],
        replies: list[list[Completion]],
        summaries: list[list[str]],
    ) -> DebateRecord:
        # Only what was generated; answers are parsed and graded by evaluate.py.
        task, plan = self.task, self.setup.plan
        reasons = [c.error for rnd in replies for c in rnd if c.error]
        return DebateRecord(
            id=item["id"],
            task=task.name,
            method=plan.method,
            # Biography items name a person and hold facts instead of a question and an answer.
            question=item["question"] if "question" in item else item["person"],
            target=item["target"] if "target" in item else item["facts"],
            agents=[AgentLog(self.agents[a].spec, histories[a]) for a in range(plan.agents)],
            finish_reasons=[[c.finish_reason for c in rnd] for rnd in replies],
            usage=Usage(
                prompt_tokens=sum(c.prompt_tokens for rnd in replies for c in rnd),
                completion_tokens=sum(c.completion_tokens for rnd in replies for c in rnd),
            ),
            errors=len(reasons),
            summaries=summaries or None,
            # Not finished: chorus_shared.runs keeps it with its reason and a resume retries it.
            error=reasons[0] if reasons else None,
        )

    def _judge(
        self,
        items: Sequence[Item],
        replies: list[list[list[Completion]]],
        records: list[DebateRecord],
    ) -> list[DebateRecord]:
        """Return ``records`` with the judge's verdicts on each agent's last biography."""
        assert self.judge is not None
        # A reply that declines is not scored (the paper): it gets no verdicts at all. An
        # empty or failed reply still gets "no" for every fact (judge_biographies), never a
        # free pass.
        declines = self.task.declines or (lambda text: False)
        bios = [
            [
                None if c.error else self.task.parse(c.text)
                for c in per_item[-1]
                if not declines(c.text)
            ]
            for per_item in replies
        ]
        verdicts = judge_biographies(
            self.judge,
            [item["person"] for item in items],
            bios,
            [item["facts"] for item in items],
            self.setup.judge_params,
        )
        return [
            replace(rec, judge=JudgeLog(self.judge.spec, item_verdicts))
            for rec, item_verdicts in zip(records, verdicts, strict=True)
        ]
