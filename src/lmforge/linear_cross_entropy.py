"""The output head and the next-token cross-entropy in one pass over row chunks.

A language model's last two steps, logits = h W^T and the mean cross-entropy over them, make
the largest tensors of a training step: N = B·T rows by V vocabulary entries, held for the
softmax, again for its gradient, and once more as the gradient of the logits (16 x 1024 tokens
of a 50k vocabulary are 3.3 GB per copy in fp32). `linear_cross_entropy` never holds more
than one chunk of rows of them: for each chunk it computes the logits, their log-sum-exp and
the loss, and (when a gradient is needed) at once the gradient of the mean loss with respect to
the logits, softmax(z) - onehot(y), which it multiplies back into the gradients of h and W.
The backward pass then only scales those saved gradients by the incoming one (the loss is a
scalar). The same FLOPs as the plain path (one product forward, two backward), no recompute;
the idea is the fused linear cross-entropy of Liger-Kernel (Hsu et al. 2024) and of Wijmans
et al. 2024 ("Cut Your Losses in Large-Vocabulary Language Models").

Math, per row n with target y_n (rows whose target is `ignore_index` carry nothing) and
M = the number of counted rows:
    loss = (1/M) sum_n [logsumexp(z_n) - z_n[y_n]],   dloss/dz_n = (softmax(z_n) - e_{y_n}) / M.
Under autocast the products run in the autocast dtype; the log-sum-exp, the softmax and the
gradient accumulators stay in fp32.

A chunk holds at most `max_chunk_elements` logits (default 2^26: 256 MiB in fp32, so a chunk
keeps a thousand rows or more of a 50k vocabulary and the products stay efficient; chunks of
42 rows made a CPU step 20% slower than the plain path). Measured with
`benchmarks/linear_cross_entropy.py` (2-core dev box, fp32, whole training steps with AdamW,
alternating in one process; peak RSS of the whole process): llama-135m (vocabulary 49152) at
4 x 256 (one chunk) 0.99x / 1.08x / 1.04x the plain path's speed over three runs, peak 0.98x;
at 8 x 256 (two chunks) 1.10x, peak 6,328 -> 5,821 MiB; gpt2-124m at 4 x 256 1.04x, 0.99x.
The saving is N x V x 4 bytes per avoided copy, so it grows with batch and vocabulary: on a
GPU at 16 x 1024 tokens of a 50k vocabulary one fp32 copy of the logits is 3.3 GB, a chunk
256 MiB.

`checkpointed_cross_entropy` is the same loss for any logits function (a head whose logits
are not a plain h W^T: LoRA, quantised, biased): one row chunk at a time under activation
checkpointing, so a chunk's logits are dropped after its forward and recomputed in the
backward pass (one more head product than the fused path, the same memory bound).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

DEFAULT_MAX_CHUNK_ELEMENTS = 1 << 26


def _chunk_rows(num_rows: int, vocab_size: int, max_chunk_elements: int) -> int:
    return max(1, min(num_rows, max_chunk_elements // max(vocab_size, 1)))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h_ND: Tensor, weight_VD: Tensor, targets_N: Tensor, ignore_index: int,
                max_chunk_elements: int, grad_enabled: bool) -> Tensor:
        N, V = h_ND.shape[0], weight_VD.shape[0]
        valid_N = targets_N != ignore_index
        count = valid_N.sum().clamp(min=1)  # a tensor: no host sync on GPU
        safe_targets_N = torch.where(valid_N, targets_N, 0)
        # forward runs with grad mode off, so the caller's mode comes in as `grad_enabled`
        needs_grad = grad_enabled and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        acc = torch.promote_types(h_ND.dtype, torch.float32)  # fp32 at least (fp64 stays fp64)
        # A frozen head (LoRA, QLoRA, optim.freeze) needs no V x D weight gradient: neither its
        # buffer nor its matmul (~0.1 GB and a head-sized product per step at 135M parameters).
        grad_h_ND = (torch.empty(h_ND.shape, dtype=acc, device=h_ND.device)
                     if needs_grad and ctx.needs_input_grad[0] else None)
        grad_w_VD = (torch.zeros(weight_VD.shape, dtype=acc, device=weight_VD.device)
                     if needs_grad and ctx.needs_input_grad[1] else None)
        total = torch.zeros((), dtype=acc, device=h_ND.device)
        rows = _chunk_rows(N, V, max_chunk_elements)
        for start in range(0, N, rows):
            end = min(start + rows, N)
            h_CD = h_ND[start:end]
            logits_CV = (h_CD @ weight_VD.t()).to(acc)
            lse_C = torch.logsumexp(logits_CV, dim=-1)
            target_logit_C = logits_CV.gather(1, safe_targets_N[start:end, None]).squeeze(1)
            valid_C = valid_N[start:end]
            total += torch.where(valid_C, lse_C - target_logit_C, 0.0).sum()
            if not needs_grad:
                continue
            # dloss/dlogits for this chunk, in place over the logits: softmax - onehot, masked, / M
            grad_CV = logits_CV.sub_(lse_C[:, None]).exp_()
            grad_CV[torch.arange(end - start, device=grad_CV.device), safe_targets_N[start:end]] -= 1.0
            grad_CV.mul_((valid_C.float() / count)[:, None])
            grad_in = grad_CV.to(h_CD.dtype)  # under autocast the products then cast as the forward's did
            if grad_h_ND is not None:
                grad_h_ND[start:end] = grad_in @ weight_VD
            if grad_w_VD is not None:
                grad_w_VD += grad_in.t() @ h_CD
        if needs_grad:
            ctx.save_for_backward(grad_h_ND, grad_w_VD)
        ctx.input_dtypes = (h_ND.dtype, weight_VD.dtype)
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        grad_h_ND, grad_w_VD = ctx.saved_tensors
        h_dtype, w_dtype = ctx.input_dtypes
        grad_h = (grad_h_ND * grad_loss).to(h_dtype) if ctx.needs_input_grad[0] else None
        grad_w = (grad_w_VD * grad_loss).to(w_dtype) if ctx.needs_input_grad[1] else None
        return grad_h, grad_w, None, None, None, None


def linear_cross_entropy(h_ND: Tensor, weight_VD: Tensor, targets_N: Tensor, ignore_index: int = -100,
                         max_chunk_elements: int | None = None) -> Tensor:
    """Mean cross-entropy (nats) of logits h W^T against targets, over the rows whose target is
    not `ignore_index`; equal to `causal_lm_loss(h @ W.T, targets)` (0, not NaN, when every
    target is ignored), with its gradients, without holding the N x V logits."""
    if h_ND.dim() != 2 or targets_N.dim() != 1 or h_ND.shape[0] != targets_N.shape[0]:
        raise ValueError(f"linear_cross_entropy wants h (N, D) and targets (N,), got {tuple(h_ND.shape)} and "
                         f"{tuple(targets_N.shape)}")
    return _LinearCrossEntropy.apply(h_ND, weight_VD, targets_N, ignore_index,
                                     max_chunk_elements or DEFAULT_MAX_CHUNK_ELEMENTS, torch.is_grad_enabled())


def _summed_chunk_nats(logits_fn: Callable[[Tensor], Tensor], h_CD: Tensor, targets_C: Tensor,
                       ignore_index: int) -> Tensor:
    logits_CV = logits_fn(h_CD)
    logits_CV = logits_CV.to(torch.promote_types(logits_CV.dtype, torch.float32))  # fp32 at least
    return F.cross_entropy(logits_CV, targets_C, ignore_index=ignore_index, reduction="sum")


def checkpointed_cross_entropy(logits_fn: Callable[[Tensor], Tensor], h_ND: Tensor, targets_N: Tensor,
                               vocab_size: int, ignore_index: int = -100,
                               max_chunk_elements: int | None = None) -> Tensor:
    """`linear_cross_entropy`'s value and gradients for logits = `logits_fn(h)`: the mean
    cross-entropy over the rows whose target is not `ignore_index` (0 when there are none),
    with at most `max_chunk_elements` logits held at a time, forward or backward."""
    valid_N = targets_N != ignore_index
    count = valid_N.sum().clamp(min=1)
    rows = _chunk_rows(h_ND.shape[0], vocab_size, max_chunk_elements or DEFAULT_MAX_CHUNK_ELEMENTS)
    total = h_ND.new_zeros((), dtype=torch.promote_types(h_ND.dtype, torch.float32))
    for start in range(0, h_ND.shape[0], rows):
        chunk = (logits_fn, h_ND[start:start + rows], targets_N[start:start + rows], ignore_index)
        if torch.is_grad_enabled():
            total = total + checkpoint(_summed_chunk_nats, *chunk, use_reentrant=False)
        else:
            total = total + _summed_chunk_nats(*chunk)
    return total / count
