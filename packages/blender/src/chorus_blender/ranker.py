"""PairRanker: a cross-encoder that reads one source and two candidates and says which is better.

The input is ``[CLS] <|source|> source [SEP] <|candidate1|> A [SEP] <|candidate2|> B [SEP]``.
The last hidden states at the three marker tokens feed the paper's two-layer head:
``concat(h_source, h_cand) -> dropout -> Linear(2H, H) -> tanh -> dropout -> Linear(H, n_tasks)``,
one score per candidate and task; the pair's logit is the mean over tasks of
``score(A) - score(B)`` (positive: A is better).

Checkpoints are saved in the PairRM layout (``config.json`` with ``source_prefix_id``,
``cand1_prefix_id``, ``cand2_prefix_id``, ``n_tasks``, ``drop_out``; weights named
``pretrained_model.*`` and ``head_layer.*``), so one loader reads our checkpoints and PairRM
checkpoints (``llm-blender/PairRM-hf``) under transformers 5 alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SOURCE_TOKEN = "<|source|>"
CAND1_TOKEN = "<|candidate1|>"
CAND2_TOKEN = "<|candidate2|>"
# Keys that make a config.json a PairRanker checkpoint (PairRM's names).
MARKER_KEYS = ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class RankerCheckpointError(ValueError):
    """A folder or hub id that is not a usable PairRanker/PairRM checkpoint."""


@dataclass
class RankerConfig:
    """Length budgets (tokens) and head settings. Defaults are PairRM's (1224 + 2 x 412 = 2048).

    Source budget that a short source leaves unused is shared equally by the two candidates.
    """

    source_max_length: int = 1224
    candidate_max_length: int = 412
    max_length: int = 2048
    n_tasks: int = 1
    dropout: float = 0.05

    def __post_init__(self) -> None:
        for name in ("source_max_length", "candidate_max_length", "max_length", "n_tasks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RankerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"RankerConfig.dropout must be in [0, 1), got {self.dropout}")


def _head(hidden: int, n_tasks: int, dropout: float) -> nn.Sequential:
    # Index layout 1 and 4 for the two Linear layers = PairRM's ``head_layer.{1,4}.*`` names.
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(2 * hidden, hidden),
        nn.Tanh(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_tasks),
    )


def _marker_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int, int]:
    """Return the token ids of the three marker tokens (added to the tokenizer beforehand)."""
    ids = tokenizer.convert_tokens_to_ids([SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN])
    # A list of tokens maps to a list of ids (transformers types the result int | list[int]).
    if not isinstance(ids, list) or len(ids) != 3:
        raise RankerCheckpointError(f"the tokenizer has no ids for the marker tokens: {ids}")
    return ids[0], ids[1], ids[2]


class PairRanker(nn.Module):
    """Cross-encoder pairwise ranker over any Hugging Face encoder."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        tokenizer: Any,
        config: RankerConfig,
        marker_ids: tuple[int, int, int],
        head: nn.Sequential | None = None,
    ) -> None:
        super().__init__()
        self.pretrained_model = encoder
        self.tokenizer = tokenizer
        self.config = config
        self.marker_ids = tuple(int(i) for i in marker_ids)
        hidden = int(encoder.config.hidden_size)
        positions = getattr(encoder.config, "max_position_embeddings", None)
        # DeBERTa without absolute positions (PairRM) reads past max_position_embeddings.
        absolute = getattr(encoder.config, "position_biased_input", True)
        if absolute and positions is not None and config.max_length > int(positions):
            raise ValueError(
                f"max_length {config.max_length} exceeds the encoder's {positions} positions; "
                "lower source_max_length / candidate_max_length / max_length in the recipe"
            )
        self.head_layer = (
            head if head is not None else _head(hidden, config.n_tasks, config.dropout)
        )

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_backbone(
        cls, name_or_path: str | Path, config: RankerConfig | None = None, *, seed: int = 0
    ) -> PairRanker:
        """Return an untrained ranker on an encoder (hub id or folder): markers added, new head."""
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN]}
        )
        encoder = AutoModel.from_pretrained(str(name_or_path))
        encoder.resize_token_embeddings(len(tokenizer))
        return cls(encoder, tokenizer, config or RankerConfig(), _marker_ids(tokenizer))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **budgets: int) -> PairRanker:
        """Return the ranker saved in a folder or hub repo (ours or PairRM's layout).

        ``budgets`` (``source_max_length``, ...) override the stored length budgets.
        Raises ``RankerCheckpointError`` naming what is missing.
        """
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = _resolve_folder(name_or_path)
        raw = json.loads((folder / "config.json").read_text())
        missing = [k for k in MARKER_KEYS if k not in raw]
        if missing:
            raise RankerCheckpointError(
                f"{folder} is not a PairRanker/PairRM checkpoint: config.json lacks "
                f"{', '.join(missing)}. Build a ranker on a plain encoder with "
                "PairRanker.from_backbone(...) (chorus-blender train --backbone ...)."
            )
        stored = raw.get("chorus_ranker", {})
        config = RankerConfig(
            **{
                **{k: v for k, v in stored.items() if k in RankerConfig.__dataclass_fields__},
                "n_tasks": int(raw.get("n_tasks", 1)),
                "dropout": float(raw.get("drop_out", stored.get("dropout", 0.05))),
                **budgets,
            }
        )
        hf_config = AutoConfig.from_pretrained(str(folder))
        encoder = AutoModel.from_config(hf_config)
        ranker = cls(
            encoder,
            AutoTokenizer.from_pretrained(str(folder)),
            config,
            (int(raw[MARKER_KEYS[0]]), int(raw[MARKER_KEYS[1]]), int(raw[MARKER_KEYS[2]])),
        )
        state = _load_state_dict(folder)
        unexpected = [k for k in state if not k.startswith(("pretrained_model.", "head_layer."))]
        result = ranker.load_state_dict(
            {k: v for k, v in state.items() if k not in unexpected}, strict=True
        )
        # Position-id buffers are recomputed by the encoder; anything else missing is an error.
        missing_weights = [k for k in result.missing_keys if "position_ids" not in k]
        if missing_weights:
            raise RankerCheckpointError(
                f"{folder}: weights missing for {', '.join(missing_weights[:5])}"
                + (" ..." if len(missing_weights) > 5 else "")
            )
        embeddings = ranker.pretrained_model.get_input_embeddings()
        # transformers types this as any nn.Module; encoders' input embeddings are nn.Embedding.
        vocab = embeddings.num_embeddings if isinstance(embeddings, nn.Embedding) else None
        if vocab is not None and max(ranker.marker_ids) >= vocab:
            raise RankerCheckpointError(
                f"{folder}: marker token ids {ranker.marker_ids} are outside the vocabulary "
                f"({vocab} embeddings)"
            )
        return ranker.eval()

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write config.json, model.safetensors and the tokenizer (PairRM layout); return folder."""
        from safetensors.torch import save_model

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.pretrained_model.config.to_dict()
        config.update(
            n_tasks=self.config.n_tasks,
            drop_out=self.config.dropout,
            source_prefix_id=self.marker_ids[0],
            cand1_prefix_id=self.marker_ids[1],
            cand2_prefix_id=self.marker_ids[2],
            chorus_ranker=asdict(self.config),
        )
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_model(self, str(folder / "model.safetensors"))
        self.tokenizer.save_pretrained(str(folder))
        return folder

    # -- encoding ---------------------------------------------------------------------------
    def encode_triple(
        self, source: str, cand1: str, cand2: str, *, cache: dict[str, list[int]] | None = None
    ) -> list[int]:
        """Return the token ids of one (source, A, B) input within the length budgets.

        ``cache`` (text -> ids) lets a batch of all pairs tokenize each text once.
        """
        tok = self.tokenizer
        cfg = self.config

        def ids(text: str) -> list[int]:
            if cache is None:
                return tok.encode(text, add_special_tokens=False)
            if text not in cache:
                cache[text] = tok.encode(text, add_special_tokens=False)
            return cache[text]

        src = ids(source)[: cfg.source_max_length]
        cls_ids = [tok.cls_token_id] if tok.cls_token_id is not None else []
        sep_ids = [tok.sep_token_id] if tok.sep_token_id is not None else []
        fixed = len(cls_ids) + 3 * (1 + len(sep_ids))
        # The source's unused budget goes to the candidates, half each; the total stays capped.
        spare = cfg.source_max_length - len(src)
        per_cand = cfg.candidate_max_length + spare // 2
        per_cand = max(1, min(per_cand, (cfg.max_length - fixed - len(src)) // 2))
        a = ids(cand1)[:per_cand]
        b = ids(cand2)[:per_cand]
        s_id, a_id, b_id = self.marker_ids
        return [
            *cls_ids,
            s_id,
            *src,
            *sep_ids,
            a_id,
            *a,
            *sep_ids,
            b_id,
            *b,
            *sep_ids,
        ]

    # -- model ------------------------------------------------------------------------------
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return ``{"logits": (B,), "scores1": (B, T), "scores2": (B, T)}`` for a padded batch."""
        hidden = self.pretrained_model(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        picked = []
        for marker in self.marker_ids:
            hits = input_ids == marker
            if not bool(hits.any(dim=1).all()):
                raise RankerCheckpointError(
                    f"marker token id {marker} missing from an input: the tokenizer/checkpoint "
                    "does not match the ranker's marker tokens"
                )
            picked.append(hidden[rows, hits.int().argmax(dim=1)])
        # The head runs in fp32 even under bf16 autocast: the logit is a difference of two
        # scores, and rounding each to bf16 would swamp small gaps.
        source, cand1, cand2 = (h.float() for h in picked)
        with torch.autocast(hidden.device.type, enabled=False):
            scores1 = self.head_layer(torch.cat([source, cand1], dim=-1))
            scores2 = self.head_layer(torch.cat([source, cand2], dim=-1))
        return {"logits": (scores1 - scores2).mean(dim=-1), "scores1": scores1, "scores2": scores2}

    def collate(self, encoded: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Return right-padded ``input_ids`` and ``attention_mask`` tensors for token-id lists."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    @torch.no_grad()
    def pair_logits(
        self,
        sources: Sequence[str],
        cands1: Sequence[str],
        cands2: Sequence[str],
        *,
        batch_size: int = 32,
        max_batch_tokens: int = 65536,
        precision: str = "auto",
    ) -> list[float]:
        """Return one logit per (source, A, B) triple, batched in length-sorted micro-batches.

        All triples go through the encoder together (sorted by length so padding stays small;
        each distinct text tokenized once), never one pair at a time; results come back in
        input order. ``precision``: ``fp32``, ``bf16`` (autocast: matmuls in bf16, norms and
        softmax in fp32; the head always in fp32) or ``auto`` = bf16 where the hardware runs
        it natively (a CUDA GPU with bf16, a CPU with AMX / AVX-512 BF16), else fp32. bf16
        moves logits by a few 1e-3 (untrained MiniLM head), which can swap near-tied
        candidates; pass ``fp32`` for the exact ranking.
        """
        if not len(sources) == len(cands1) == len(cands2):
            raise ValueError("sources, cands1 and cands2 must have the same length")
        if batch_size < 1 or max_batch_tokens < 1:
            raise ValueError("batch_size and max_batch_tokens must be >= 1")
        cache: dict[str, list[int]] = {}
        encoded = [
            self.encode_triple(s, a, b, cache=cache)
            for s, a, b in zip(sources, cands1, cands2, strict=True)
        ]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        out = [0.0] * len(encoded)
        device = next(self.parameters()).device
        bf16 = use_bf16(precision, device)
        was_training = self.training
        self.eval()
        start = 0
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            while start < len(order):
                width = len(encoded[order[start]])  # longest of this batch: the list is sorted
                n = max(1, min(batch_size, max_batch_tokens // max(width, 1)))
                chunk = order[start : start + n]
                batch = self.collate([encoded[i] for i in chunk])
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = self(**batch)["logits"].float().cpu().tolist()
                for i, value in zip(chunk, logits, strict=True):
                    out[i] = value
                start += n
        self.train(was_training)
        return out


PRECISIONS = ("auto", "fp32", "bf16")


def use_bf16(precision: str, device: torch.device | str) -> bool:
    """Return whether ``precision`` means bf16 autocast on ``device`` (see ``pair_logits``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if kind == "cpu":
        from chorus_shared.models.hf import cpu_has_native_bf16

        return cpu_has_native_bf16()
    return False


def _resolve_folder(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RankerCheckpointError(f"{path} has no config.json: not a ranker checkpoint")
        return path
    if path.exists():
        raise RankerCheckpointError(f"{path} is a file; give the checkpoint's folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                str(name_or_path), allow_patterns=["*.json", "*.safetensors", "*.bin", "*.model"]
            )
        )
    except Exception as exc:  # hub unreachable, repo missing, auth: one clear message
        raise RankerCheckpointError(
            f"no local folder {str(name_or_path)!r} and the hub could not provide it "
            f"({type(exc).__name__}: {exc}). Give a local checkpoint folder."
        ) from exc


def _load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / WEIGHT_FILES[0]).is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / WEIGHT_FILES[0]))
    if (folder / WEIGHT_FILES[1]).is_file():
        return torch.load(folder / WEIGHT_FILES[1], map_location="cpu", weights_only=True)
    raise RankerCheckpointError(f"{folder} has none of {', '.join(WEIGHT_FILES)}")
