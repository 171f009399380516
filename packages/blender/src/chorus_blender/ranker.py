"""PairRanker: a cross-encoder that reads one source and two candidates and says which is better.

The input is the original's: ``[CLS] <|source|> source [SEP] [CLS] <|candidate1|> A [SEP] [CLS]
<|candidate2|> B [SEP]`` (each part encoded on its own, so each candidate keeps its [CLS]).
The last hidden states at the three marker tokens feed the paper's two-layer head:
``concat(h_source, h_cand) -> dropout -> Linear(2H, H) -> tanh -> dropout -> Linear(H, n_tasks)``,
one score per candidate and task; the pair's logit is the mean over tasks of
``score(A) - score(B)`` (positive: A is better).

Checkpoints are saved in the PairRM-hf layout (``config.json`` = the encoder's config plus
``source_prefix_id``, ``cand1_prefix_id``, ``cand2_prefix_id``, ``n_tasks``, ``drop_out``;
weights named ``pretrained_model.*`` and ``head_layer.*``). The loader reads both published
layouts: that one (``llm-blender/PairRM-hf``) and the original's RankerConfig form
(``llm-blender/PairRM``, the repository the README and TRL load: ``ranker_type``,
``model_name``, ``source_maxlength``, ``candidate_maxlength``, ... with the marker ids taken
from the tokenizer's added tokens).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from chorus_shared.models.base import looks_like_path, model_load_error

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SOURCE_TOKEN = "<|source|>"
CAND1_TOKEN = "<|candidate1|>"
CAND2_TOKEN = "<|candidate2|>"
# The original's collator also adds a generic candidate marker (replaced by 1/2 in the model).
CAND_TOKEN = "<|candidate|>"
# Backbone configs of the encoders the released rankers use, for loading them offline (the
# RankerConfig form names the backbone by hub id only). Values: the hub config.json files.
KNOWN_BACKBONES: dict[str, dict[str, Any]] = {
    "microsoft/deberta-v3-large": {
        "model_type": "deberta-v2",
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-7,
        "relative_attention": True,
        "max_relative_positions": -1,
        "position_buckets": 256,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "pad_token_id": 0,
        "vocab_size": 128100,
    },
}
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
        # Precision of pair_logits when a call does not name one (see PRECISIONS).
        self.default_precision = "original"
        self.load_notes: list[str] = []
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
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
            encoder = AutoModel.from_pretrained(str(name_or_path))
        except OSError as exc:
            raise model_load_error(
                str(name_or_path),
                exc,
                what="ranker backbone",
                instead="--backbone minilm (the offline MiniLM encoder)",
            ) from exc
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN]}
        )
        encoder.resize_token_embeddings(len(tokenizer))
        return cls(encoder, tokenizer, config or RankerConfig(), _marker_ids(tokenizer))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **budgets: int) -> PairRanker:
        """Return the ranker saved in a folder or hub repo (ours or PairRM's layout).

        ``budgets`` (``source_max_length``, ...) override the stored length budgets.
        Raises ``RankerCheckpointError`` naming what is missing.
        """
        from transformers import AutoConfig, AutoModel

        folder = _resolve_folder(name_or_path)
        raw = json.loads((folder / "config.json").read_text())
        state = _load_state_dict(folder)
        tokenizer = _load_tokenizer(folder)
        if all(k in raw for k in MARKER_KEYS):
            # PairRM-hf layout (and ours): the encoder's config with the marker ids.
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
            markers = (int(raw[MARKER_KEYS[0]]), int(raw[MARKER_KEYS[1]]), int(raw[MARKER_KEYS[2]]))
        elif "ranker_type" in raw:
            # The original's RankerConfig form (llm-blender/PairRM).
            if raw["ranker_type"] != "pairranker":
                raise RankerCheckpointError(
                    f"{folder}: ranker_type {raw['ranker_type']!r} is not a PairRanker"
                )
            source_max = int(raw.get("source_maxlength") or 1224)
            cand_max = int(raw.get("candidate_maxlength") or 412)
            config = replace(
                RankerConfig(
                    source_max_length=source_max,
                    candidate_max_length=cand_max,
                    max_length=source_max + 2 * cand_max,
                    n_tasks=int(raw.get("n_tasks") or 1),
                    dropout=float(raw.get("drop_out", 0.05)),
                ),
                **budgets,
            )
            hf_config = _backbone_config(folder, raw, state)
            markers = _added_marker_ids(tokenizer, folder)
        else:
            raise RankerCheckpointError(
                f"{folder} is not a PairRanker/PairRM checkpoint: config.json has neither "
                f"{', '.join(MARKER_KEYS)} (PairRM-hf layout) nor ranker_type (PairRM's "
                "RankerConfig). Build a ranker on a plain encoder with "
                "PairRanker.from_backbone(...) (chorus-blender train --backbone ...)."
            )
        encoder = AutoModel.from_config(hf_config)
        ranker = cls(encoder, tokenizer, config, markers)
        expected = set(ranker.state_dict())
        unexpected = [k for k in state if not k.startswith(("pretrained_model.", "head_layer."))]
        # A stored position_ids buffer (older transformers saved it) is recomputed by the
        # encoder: dropped when this version has no such buffer, loaded when it has.
        dropped = [k for k in state if k.endswith("position_ids") and k not in expected]
        result = ranker.load_state_dict(
            {k: v for k, v in state.items() if k not in unexpected and k not in dropped},
            strict=False,
        )
        wrong = [k for k in result.unexpected_keys]
        if wrong:
            raise RankerCheckpointError(
                f"{folder}: weights for parts this ranker does not have: {', '.join(wrong[:5])}"
            )
        # Position-id buffers are recomputed by the encoder; anything else missing is an error.
        missing_weights = [k for k in result.missing_keys if "position_ids" not in k]
        if missing_weights:
            raise RankerCheckpointError(
                f"{folder}: weights missing for {', '.join(missing_weights[:5])}"
                + (" ..." if len(missing_weights) > 5 else "")
            )
        ranker.load_notes = [f"dropped the stored buffer {k}" for k in dropped]
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

        The original's layout and budgets (``CrossCompareCollator``): each part is encoded on
        its own as ``[CLS] marker text [SEP]`` and the three are concatenated. The source keeps
        at most ``source_max_length`` ids including its three special tokens; each candidate at
        most ``candidate_max_length + (source_max_length - len(source)) // 2`` ids including
        its three (PairRM: ``(2048 - len(source)) // 2``), and the whole stays within
        ``max_length``. The original measures the unused source budget on the longest source
        of its batch; here on the item's own source, so an item's ids never depend on its
        batch. Separator tokens inside a text become spaces, as in the original.
        ``cache`` (text -> ids) lets a batch of all pairs tokenize each text once.
        """
        tok = self.tokenizer
        cfg = self.config
        sep_token = tok.sep_token if tok.sep_token is not None else tok.eos_token
        cls_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        head = [cls_id] if cls_id is not None else []
        tail = [sep_id] if sep_id is not None else []

        def ids(text: str) -> list[int]:
            if cache is not None and text in cache:
                return cache[text]
            clean = text.replace(sep_token, " ") if sep_token else text
            out = tok.encode(clean, add_special_tokens=False)
            if cache is not None:
                cache[text] = out
            return out

        def part(marker: int, body: list[int], budget: int) -> list[int]:
            room = max(0, budget - len(head) - 1 - len(tail))
            return [*head, marker, *body[:room], *tail]

        s_id, a_id, b_id = self.marker_ids
        src = part(s_id, ids(source), cfg.source_max_length)
        per_cand = cfg.candidate_max_length + (cfg.source_max_length - len(src)) // 2
        per_cand = min(per_cand, (cfg.max_length - len(src)) // 2)
        return [*src, *part(a_id, ids(cand1), per_cand), *part(b_id, ids(cand2), per_cand)]

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
        precision: str | None = None,
    ) -> list[float]:
        """Return one logit per (source, A, B) triple, batched in length-sorted micro-batches.

        All triples go through the encoder together (sorted by length so padding stays small;
        each distinct text tokenized once), never one pair at a time; results come back in
        input order. ``precision`` (default: the ranker's ``default_precision``, "original"):
        see :func:`autocast_dtype`. bf16 moves logits by a few 1e-3, which can swap near-tied
        candidates; the original's precision (fp32 on CPU) gives its exact ranking.
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
        dtype = autocast_dtype(precision or self.default_precision, device)
        was_training = self.training
        self.eval()
        start = 0
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
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


PRECISIONS = ("original", "fp32", "fp16", "bf16", "auto")


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """Return the autocast dtype of ``precision`` on ``device`` (None = plain fp32).

    ``original`` = the original's (fp32 on CPU; fp16 on a GPU, where it halves the model);
    ``fp32``; ``fp16``; ``bf16`` (matmuls in bf16, norms and softmax in fp32; the head always
    in fp32); ``auto`` = bf16 where the hardware runs it natively (a CUDA GPU with bf16, a CPU
    with AMX / AVX-512 BF16), else fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "original":
        return torch.float16 if kind in ("cuda", "mps") else None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and use_bf16("auto", device):
        return torch.bfloat16
    return None


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


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise RankerCheckpointError(f"{folder}: no usable tokenizer files ({exc})") from exc


def _added_marker_ids(tokenizer: Any, folder: Path) -> tuple[int, int, int]:
    """Return the marker ids of a RankerConfig-form checkpoint: its tokenizer's added tokens.

    A tokenizer saved without them gets them added in the original collator's order
    (source, candidate1, candidate2, candidate), which gives the ids the original used.
    """
    vocab = tokenizer.get_vocab()
    if not all(t in vocab for t in (SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN)):
        tokenizer.add_tokens([SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN, CAND_TOKEN])
    ids = _marker_ids(tokenizer)
    unk = tokenizer.unk_token_id
    if unk is not None and unk in ids:
        raise RankerCheckpointError(f"{folder}: the tokenizer maps a marker token to unk")
    return ids


def _backbone_config(folder: Path, raw: dict[str, Any], state: dict[str, torch.Tensor]) -> Any:
    """Return the encoder config of a RankerConfig-form checkpoint, built offline.

    ``model_name`` is the backbone: a local folder with a config.json, one of
    :data:`KNOWN_BACKBONES` (the released rankers' encoders), or else a hub id read through
    transformers (online only). The vocabulary size is the checkpoint's embedding rows.
    """
    from transformers import CONFIG_MAPPING, AutoConfig

    name = str(raw.get("model_name") or "")
    local = Path(name)
    if name and (local / "config.json").is_file():
        config = AutoConfig.from_pretrained(str(local))
    elif name in KNOWN_BACKBONES:
        values = dict(KNOWN_BACKBONES[name])
        config = CONFIG_MAPPING[values.pop("model_type")](**values)
    else:
        try:
            config = AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as exc:
            raise RankerCheckpointError(
                f"{folder}: config.json names the backbone {name!r}, which is neither a local "
                f"folder nor one of {sorted(KNOWN_BACKBONES)}, and the hub could not give its "
                f"config ({type(exc).__name__})"
            ) from exc
    rows = state.get("pretrained_model.embeddings.word_embeddings.weight")
    if rows is not None:
        config.vocab_size = int(rows.shape[0])
    return config


def _resolve_folder(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RankerCheckpointError(f"{path} has no config.json: not a ranker checkpoint")
        return path
    if path.exists():
        raise RankerCheckpointError(f"{path} is a file; give the checkpoint's folder")
    if looks_like_path(str(name_or_path)):  # not a hub id: do not ask the hub for it
        raise RankerCheckpointError(
            f"the ranker folder {str(name_or_path)!r} does not exist: give the model/ folder of "
            "a `chorus-blender train` run, or a hub id such as llm-blender/PairRM-hf"
        )
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
