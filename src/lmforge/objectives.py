"""Training objectives and evaluation measures as pure functions of tensors.

Shape legend: B batch, T sequence positions, V vocabulary.

Targets arrive already shifted by the data loader (``get_batch`` returns windows of
``seq_len + 1`` tokens split into ``inputs = w[:-1]`` and ``targets = w[1:]``), so logits
at position t are scored against ``targets_BT[:, t]`` with no shifting here. Positions
whose target equals ``ignore_index`` (padding, SFT prompt tokens) carry no loss.

The denoising objectives score unshifted labels the same way: masked LM labels sit at the
corrupted positions themselves, and a seq2seq decoder fed ``shift_right(labels)`` predicts
``labels[:, t]`` at position t. Their inputs and labels are built in ``lmforge.masking``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lmforge.errors import DataError


def _summed_nats(logits_BTV: Tensor, targets_BT: Tensor, ignore_index: int) -> Tensor:
    """Sum of -log p(target) over non-ignored positions, computed in float32 at least
    (float64 logits stay float64).

    The upcast matters under bf16: bf16 has 8 mantissa bits, so a log-softmax computed and
    stored in bf16 rounds each token's loss by up to ~0.4% and the sum drifts further
    (nanoGPT and nanochat upcast logits for the same reason).
    """
    return F.cross_entropy(
        logits_BTV.reshape(-1, logits_BTV.size(-1)).to(torch.promote_types(logits_BTV.dtype, torch.float32)),
        targets_BT.reshape(-1),
        ignore_index=ignore_index,
        reduction="sum",
    )


def causal_lm_loss(logits_BTV: Tensor, targets_BT: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean next-token cross-entropy (nats) over the positions whose target is not ignored.

    loss = -(1/N) * sum_{t: y_t != ignore} log softmax(z_t)[y_t]   (maximum likelihood on the
    autoregressive factorisation p(x) = prod_t p(x_t | x_<t), Radford et al. 2018/2019).

    A batch in which every target is ignored returns 0 (with a zero gradient) instead of the
    0/0 = NaN that ``F.cross_entropy(reduction="mean")`` gives: an SFT micro-batch made only
    of prompt tokens should contribute nothing, not poison the step. The count stays a
    tensor, so there is no host sync on GPU.
    """
    num_targets = (targets_BT != ignore_index).sum()
    return _summed_nats(logits_BTV, targets_BT, ignore_index) / num_targets.clamp(min=1)


def token_loss_sum(logits_BTV: Tensor, targets_BT: Tensor,
                   ignore_index: int = -100) -> tuple[Tensor, int]:
    """(sum of nats, number of scored tokens) for evaluation.

    Evaluation accumulates these over many batches and divides once at the end, so batches
    with different numbers of scored tokens are weighted correctly (a mean of per-batch
    means would not be). The count is a Python int (one host sync per batch, fine for eval).
    """
    num_targets = int((targets_BT != ignore_index).sum())
    return _summed_nats(logits_BTV, targets_BT, ignore_index), num_targets


def bits_per_byte(total_nats: float, num_bytes: int) -> float:
    """Tokenizer-independent loss: total_nats / (ln 2 * num_bytes).

    Converts nats to bits (divide by ln 2) and normalises by the UTF-8 bytes of the text that
    was scored instead of by tokens, so models with different vocabularies are comparable
    (Gao et al. 2020, The Pile, arXiv 2101.00027, section 3: BPB = (L_T / L_B) * loss / ln 2,
    with L_T tokens and L_B bytes).
    """
    if num_bytes <= 0:
        raise DataError("bits per byte needs at least one byte of evaluation text: "
                        "check that the evaluation split is not empty")
    return float(total_nats) / (math.log(2) * num_bytes)


def perplexity(mean_nats: float) -> float:
    """exp(mean cross-entropy in nats); inf when that overflows a float (a diverged model)."""
    try:
        return math.exp(float(mean_nats))
    except OverflowError:
        return math.inf


def masked_lm_loss(logits_BTV: Tensor, labels_BT: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy (nats) over the labelled (selected) positions of a masked LM.

    BERT (Devlin et al. 2019, arXiv 1810.04805, section 3.1): the loss is taken only on the
    tokens chosen for corruption, predicting the original id from the corrupted input;
    ``lmforge.masking.mask_tokens`` writes those ids into ``labels_BT`` and -100 elsewhere.
    Labels are aligned with the logits (no shift). A batch with no labelled position gives
    0, as in ``causal_lm_loss``.
    """
    return causal_lm_loss(logits_BTV, labels_BT, ignore_index)


def masked_token_accuracy(logits_BTV: Tensor, labels_BT: Tensor,
                          ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """(number of labelled positions whose argmax is the label, number of labelled positions).

    Both are 0-d int64 tensors on the logits' device, so a training step can log them
    without a host sync; sum them over batches and divide once for the accuracy. Ties in
    the argmax go to the lowest id (``torch.argmax``).
    """
    labelled_BT = labels_BT != ignore_index
    correct_BT = (logits_BTV.argmax(dim=-1) == labels_BT) & labelled_BT
    return correct_BT.sum(), labelled_BT.sum()


def seq2seq_loss(logits_BTV: Tensor, labels_BT: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy (nats) of an encoder-decoder over the non-ignored target tokens.

    Teacher forcing (T5, Raffel et al. 2020, arXiv 1910.10683): the decoder reads
    ``shift_right(labels_BT, ...)`` and its logits at position t are scored against
    ``labels_BT[:, t]``; padded target positions carry -100. Computed in float32 and 0 for
    an all-ignored batch, as ``causal_lm_loss``.
    """
    return causal_lm_loss(logits_BTV, labels_BT, ignore_index)


def shift_right(labels_BT: Tensor, decoder_start_id: int, pad_id: int,
                ignore_index: int = -100) -> Tensor:
    """Decoder inputs for teacher forcing: ``[start, y_0, ..., y_{T-2}]`` per row.

    As in T5 (HF transformers' ``T5PreTrainedModel._shift_right``): the decoder starts
    from ``decoder_start_id`` (T5 uses its pad id), the labels move one position right,
    the last label falls off, and ignored positions (-100, not a token id) become ``pad_id``.
    """
    start_B1 = torch.full_like(labels_BT[:, :1], decoder_start_id)
    shifted_BT = torch.cat([start_B1, labels_BT[:, :-1]], dim=1)
    return shifted_BT.masked_fill(shifted_BT == ignore_index, pad_id)
