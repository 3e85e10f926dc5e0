"""Output heads that own their loss: every use of the head's weight goes through the module's
call, so a wrapper (a LoRA or quantised head, an FSDP unshard hook, a tensor-parallel plan)
sees the loss computation too, not only the logits.

The head protocol the models call is `head(h_BTD, targets_BT=None)`: logits, or with targets
the mean loss. A module put in the head's place keeps it (subclassing `LMHead` and overriding
`logits` is the simplest way: the loss then follows the override).

Shape legend: B batch, T positions, N = B·T rows, D model width, V vocabulary.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from lmforge.linear_cross_entropy import checkpointed_cross_entropy, linear_cross_entropy

IGNORE_INDEX = -100  # targets that carry no loss (padding, prompt tokens), as `lmforge.objectives`


class LMHead(nn.Linear):
    """The language-model head: logits = (h · logit_scale) W^T (+ b).

    `forward(h_BTD) -> logits_BTV`; `forward(h_BTD, targets_BT)` -> the mean next-token
    cross-entropy over the targets that are not -100, without ever holding all N x V logits:

    * this class as it is: `linear_cross_entropy`, the fused chunked head + loss (its own
      weight, read here, inside its own forward);
    * a subclass that overrides `logits` (a wrapped or quantised head): the same loss through
      its `logits`, one row chunk at a time, each chunk's logits recomputed in the backward
      pass (`checkpointed_cross_entropy`), so the override is never bypassed.

    `logit_scale` multiplies h before the product: T5 v1.0 rescales the decoder output by
    dim**-0.5 before its tied head (Mesh TensorFlow T5). A subclass of `nn.Linear`, so the
    state-dict key stays `output.weight` and tying (`head.weight = embedding.weight`) works.
    """

    def __init__(self, dim: int, vocab_size: int, bias: bool = False, logit_scale: float = 1.0):
        super().__init__(dim, vocab_size, bias=bias)
        self.logit_scale = logit_scale

    def scaled(self, h_BTD: torch.Tensor) -> torch.Tensor:
        return h_BTD if self.logit_scale == 1.0 else h_BTD * self.logit_scale

    def logits(self, h_BTD: torch.Tensor) -> torch.Tensor:
        return super().forward(self.scaled(h_BTD))

    def forward(self, h_BTD: torch.Tensor, targets_BT: Optional[torch.Tensor] = None) -> torch.Tensor:
        if targets_BT is None:
            return self.logits(h_BTD)
        h_ND, targets_N = h_BTD.flatten(0, -2), targets_BT.flatten()
        if type(self).logits is LMHead.logits and self.bias is None:
            return linear_cross_entropy(self.scaled(h_ND), self.weight, targets_N, IGNORE_INDEX)
        return checkpointed_cross_entropy(self.logits, h_ND, targets_N, self.out_features, IGNORE_INDEX)
