"""Calls into peft without the FutureWarning transformers 5 gives for its ``is_gradient_checkpointing``
probe (not ours to act on), silenced only while peft runs, never process-wide; and LoRA dropout
with a cheaper mask draw."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Ignore peft's ``is_gradient_checkpointing`` FutureWarning inside the block only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


class UniformDropout(torch.nn.Dropout):
    """``nn.Dropout`` whose keep-mask is one uniform draw compared with ``p`` instead of
    ``bernoulli_``: the same distribution, and on CPU LoRA dropout's mask drawing was 14% of a
    training step (BENCHMARKS.md, issue 25). It draws a different random stream than
    ``nn.Dropout``; the draw is float32 whatever the input, so ``p`` is exact in bf16 too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * keep.to(x.dtype)


def use_uniform_dropout(model: torch.nn.Module) -> int:
    """Swap every LoRA layer's ``nn.Dropout`` for ``UniformDropout`` (same ``p``); returns how many."""
    from peft.tuners.lora import LoraLayer

    swapped = 0
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for name, dropout in module.lora_dropout.items():
                if type(dropout) is torch.nn.Dropout:
                    module.lora_dropout[name] = UniformDropout(dropout.p)
                    swapped += 1
    return swapped
