"""Padding-free training batches: the examples of a micro-batch packed into one row.

A packed micro-batch holds the same examples as the padded one, end to end in a single row of
``sum(lengths)`` tokens with no padding: ``position_ids`` restart at 0 for each example (so RoPE
sees the same positions as unpacked), and ``cu_seq_lens`` (the cumulative example lengths,
``[0, l1, l1+l2, ...]``) tells the attention where each example starts and ends. The attention
(:func:`varlen_sdpa_attention`, registered with transformers as ``chorus_varlen``) runs causal
SDPA on each example's own slice, so no token attends across an example boundary and no
``L x L`` block-diagonal mask is ever built (a dense mask over the packed row would cost
attention FLOPs quadratic in the *packed* length, ~1.8x the linear layers' FLOPs for eight
300-token examples on SmolLM2-135M).

The loss is the one of :func:`chorus_shared.training.trainer.weighted_token_loss`, unchanged:
``sum(w * CE) / num_items``. Each example's first token has weight 0 (``build_examples``
guarantees it and the collator enforces it), so the prediction that crosses a boundary (the last
token of one example "predicting" the first of the next) never counts. Logits are computed only
at the positions whose next token carries weight (``logits_to_keep`` as an index tensor), which
also skips the LM head and the fp32 cross-entropy over the context tokens.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

ATTENTION_NAME = "chorus_varlen"

_registered = False


def varlen_sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Returns ``(attn_output [B, T, H, D], None)``: causal SDPA per packed example.

    With ``cu_seq_lens_q`` in ``kwargs`` (a packed row, batch 1) each example's queries attend
    only to that example's keys; otherwise this is transformers' own SDPA attention.
    """
    import torch
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or attention_mask is not None:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    if kwargs.get("softcap") is not None:
        raise ValueError("packed batches do not support attention logit soft-capping; use "
                         "batching: padded for this model")  # fmt: skip
    cuts = bounds.tolist() if torch.is_tensor(bounds) else list(bounds)
    window = getattr(module, "sliding_window", None)
    if window is not None and max(b - a for a, b in itertools.pairwise(cuts)) > window:
        raise ValueError(
            f"an example is longer than the model's sliding window ({window}); packed batches "
            "do not implement sliding-window attention: use batching: padded"
        )
    groups = key.shape[1] != query.shape[1]
    if groups:
        # Expand the key/value heads once (GQA): portable across SDPA kernels and CPUs.
        repeat = query.shape[1] // key.shape[1]
        key = key.repeat_interleave(repeat, dim=1)
        value = value.repeat_interleave(repeat, dim=1)
    parts = [
        F.scaled_dot_product_attention(
            query[:, :, a:b],
            key[:, :, a:b],
            value[:, :, a:b],
            dropout_p=dropout,
            is_causal=True,
            scale=scaling,
        )
        for a, b in itertools.pairwise(cuts)
        if b > a
    ]
    out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
    return out.transpose(1, 2).contiguous(), None


def _mask_or_none(*args: Any, **kwargs: Any) -> Any:
    """The 4D mask for padded input (as SDPA builds it); None for packed or unpadded rows."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def register_varlen_attention() -> str:
    """Registers :func:`varlen_sdpa_attention` with transformers; returns its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(ATTENTION_NAME, varlen_sdpa_attention)
        AttentionMaskInterface.register(ATTENTION_NAME, _mask_or_none)
        _registered = True
    return ATTENTION_NAME


def base_model(model: Any) -> Any:
    """Returns the transformers model inside a PEFT wrapper (or ``model`` itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def packing_unsupported(model: Any, longest: int = 0) -> str | None:
    """Returns why ``model`` cannot train on packed rows (None when it can).

    Packing needs a decoder-only model whose attention goes through transformers' attention
    interface (it then receives ``cu_seq_lens_q``) and whose forward takes ``position_ids``
    and an index tensor as ``logits_to_keep``, without attention soft-capping, and, where
    layers attend through a sliding window, examples (``longest`` tokens at most) that fit it.
    """
    inner = base_model(model)
    config = getattr(inner, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return "not a decoder-only transformers model"
    if not getattr(inner, "_supports_attention_backend", False):
        return f"{type(inner).__name__} does not use transformers' attention interface"
    params = inspect.signature(inner.forward).parameters
    for name in ("position_ids", "logits_to_keep"):
        if name not in params:
            return f"{type(inner).__name__}.forward takes no {name!r}"
    if getattr(config, "attn_logit_softcapping", None):
        return "the model soft-caps attention logits"
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        windowed = "sliding_attention" in layer_types
    else:
        windowed = bool(getattr(config, "use_sliding_window", True))
    if window and windowed and longest > int(window):
        return f"an example ({longest} tokens) is longer than the sliding window ({window})"
    return None


class PackedCollator:
    """Packs a micro-batch's examples into one row (see the module docstring).

    Returns ``input_ids``/``weights``/``position_ids`` of shape ``[1, T]`` (T = the examples'
    total length), ``cu_seq_lens`` (int32, ``[n + 1]``), ``max_length`` (the longest example),
    ``logits_index`` (the positions whose next token has weight > 0), plus ``labels`` (-100
    where the weight is 0: the Trainer counts the trained tokens from them) and an all-ones
    ``attention_mask`` (the Trainer counts input tokens from it; it is not passed to the model).
    """

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        weights: list[float] = []
        positions: list[int] = []
        cuts = [0]
        for f in features:
            n = len(f["input_ids"])
            ids.extend(f["input_ids"])
            w = list(f["weights"])
            if w:
                w[0] = 0.0  # never train the cross-boundary prediction
            weights.extend(w)
            positions.extend(range(n))
            cuts.append(cuts[-1] + n)
        input_ids = torch.tensor([ids], dtype=torch.long)
        w_t = torch.tensor([weights], dtype=torch.float32)
        keep = (w_t[0, 1:] > 0).nonzero().squeeze(-1)
        return {
            "input_ids": input_ids,
            "weights": w_t,
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "cu_seq_lens": torch.tensor(cuts, dtype=torch.int32),
            "max_length": max((b - a for a, b in itertools.pairwise(cuts)), default=0),
            "logits_index": keep,
            "labels": input_ids.masked_fill(w_t <= 0, -100),
            "attention_mask": torch.ones_like(input_ids),
        }


def packed_forward_loss(model: Any, inputs: Mapping[str, Any], num_items: Any = None) -> Any:
    """Returns ``(loss, outputs)`` of the weighted token loss on a packed batch.

    ``loss = sum over kept positions p of w[p+1] * CE(logits[p], input_ids[p+1]) / num_items``
    (``num_items`` defaults to the count of weighted tokens): the same value as
    ``weighted_token_loss`` on the same examples padded.
    """
    import torch.nn.functional as F

    from chorus_shared.training.trainer import divide_by_items

    ids = inputs["input_ids"]
    keep = inputs["logits_index"]
    cuts = inputs["cu_seq_lens"]
    longest = int(inputs["max_length"])
    outputs = model(
        input_ids=ids,
        position_ids=inputs["position_ids"],
        cu_seq_lens_q=cuts,
        cu_seq_lens_k=cuts,
        max_length_q=longest,
        max_length_k=longest,
        logits_to_keep=keep,
        use_cache=False,
    )
    logits = outputs.logits[0].float()  # [K, V]: only the positions that are trained
    targets = ids[0, keep + 1]
    w = inputs["weights"][0, keep + 1].to(logits.dtype)
    total = (F.cross_entropy(logits, targets, reduction="none") * w).sum()
    return divide_by_items(total, (w > 0).sum() if num_items is None else num_items), outputs
