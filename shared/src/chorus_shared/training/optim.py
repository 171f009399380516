"""bf16 model weights with an fp32 master copy inside the optimizer (recipe ``bf16_weights``).

Under ``bf16: true`` (autocast) the model keeps fp32 weights and every forward casts them to
bf16 for the matmuls, while norms, the residual stream and every elementwise op run in fp32.
With ``bf16_weights: true`` the model itself is bf16, so activations, gradients and those
elementwise ops are bf16 too (half the memory traffic), and :class:`MasterWeightAdamW` keeps an
fp32 copy of every trained weight: each step adds the bf16 gradient to the fp32 master with
AdamW and writes the master back, rounded, into the model. Without the master copy an AdamW
step at fine-tuning learning rates (1e-5 .. 1e-4) is smaller than half a bf16 ulp of most
weights and would be rounded away.

Numerics differ from autocast: the forward's activations (residual stream, norms) and the
gradients (including their accumulation over micro-batches) are rounded to bf16. The master
weights are not part of a checkpoint's model weights: a resumed run restarts them from the
saved bf16 weights (the AdamW moments are restored exactly).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class MasterWeightAdamW(torch.optim.AdamW):
    """AdamW over fp32 copies of (bf16) model parameters; returns nothing of note.

    ``param_groups`` are given as for AdamW, with the model's parameters; each group's params
    are replaced by fp32 master copies, and :meth:`step` moves gradients in and weights out.
    """

    def __init__(self, params: Iterable[Any], **kwargs: Any) -> None:
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.model_params: list[list[torch.nn.Parameter]] = []
        master_groups = []
        for group in groups:
            model_params = list(group["params"])
            self.model_params.append(model_params)
            masters = [p.detach().clone().float().requires_grad_(True) for p in model_params]
            master_groups.append({**group, "params": masters})
        super().__init__(master_groups, **kwargs)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One AdamW step on the fp32 masters; returns the closure's loss (or None)."""
        if closure is not None:
            raise ValueError("MasterWeightAdamW does not take a closure")
        for group, model_params in zip(self.param_groups, self.model_params, strict=True):
            for master, param in zip(group["params"], model_params, strict=True):
                master.grad = None if param.grad is None else param.grad.float()
        super().step()
        for group, model_params in zip(self.param_groups, self.model_params, strict=True):
            for master, param in zip(group["params"], model_params, strict=True):
                if master.grad is not None:
                    param.copy_(master)
                    master.grad = None
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears the model parameters' gradients (the masters hold none between steps)."""
        for model_params in self.model_params:
            for param in model_params:
                if set_to_none:
                    param.grad = None
                elif param.grad is not None:
                    param.grad.zero_()
