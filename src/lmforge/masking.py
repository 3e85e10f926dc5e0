"""Data-side corruption for denoising objectives: token ids in, (inputs, labels) out.

Two recipes, both pure functions that draw all their randomness from an optional
``torch.Generator`` (same generator state, same output):

- ``mask_tokens``: BERT masked-LM corruption, optionally with whole-word masking.
- ``random_spans_noise_mask`` / ``span_corrupt``: T5 span corruption, with
  ``span_corruption_lengths`` / ``raw_length_for_inputs`` to size packed batches.

The matching losses live in ``lmforge.objectives`` (``masked_lm_loss``, ``seq2seq_loss``,
``shift_right``). Labels use -100 for "no loss here", the ``ignore_index`` default there.

Shape legend: B batch, T sequence positions, L length of one unbatched sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from lmforge.errors import ConfigError

IGNORE_INDEX = -100


# ---------------------------------------------------------------------------- BERT MLM


def mask_tokens(
    input_ids_BT: Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    mask_prob: float = 0.15,
    mask_replace: float = 0.8,
    random_replace: float = 0.1,
    generator: torch.Generator | None = None,
    word_starts_BT: Tensor | None = None,
    pad_id: int | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT masked-LM corruption: returns ``(inputs_BT, labels_BT)``.

    Recipe of Devlin et al. 2019 (BERT, arXiv 1810.04805, section 3.1 and appendix A.1):
    each position that is neither a special token (``special_ids``, ``mask_id``) nor
    ``pad_id`` is selected with probability ``mask_prob``; a selected position becomes
    ``mask_id`` with probability ``mask_replace``, a random token with probability
    ``random_replace`` and stays unchanged otherwise (80/10/10 by default; the unchanged
    and random cases keep the representation of unmasked tokens honest, since ``[MASK]``
    never appears at fine-tuning time). The random token is drawn uniformly from the
    non-special vocabulary (it may equal the original token, as in BERT).
    ``labels_BT`` holds the original id at selected positions and -100 elsewhere.

    Selection is an independent Bernoulli draw per position (as in RoBERTa's dynamic
    masking), so the 15% is a rate, not an exact per-sequence count as in BERT's offline
    ``create_pretraining_data``; a sequence may get no labelled position, which
    ``masked_lm_loss`` handles (it returns 0 for an all-ignored batch).

    Whole-word masking (Google BERT whole-word-masking release, 2019; Cui et al. 2019,
    arXiv 1906.08101): with ``word_starts_BT`` (bool, True where a token begins a word) the
    Bernoulli draw is made once per word and shared by all its tokens, so a word is
    masked entirely or not at all and the expected token rate stays ``mask_prob``. The
    80/10/10 choice is still made per token, as in the Google release. Tokens before the
    first word start of a row form a word of their own; special and pad tokens are never
    selected even when they sit inside a word.

    Randomness is drawn in a fixed order (selection, replacement choice, random ids), all
    of full shape, so the result depends only on the inputs and the generator state.
    """
    if not 0.0 <= mask_prob <= 1.0:
        raise ConfigError(f"mask_prob must be in [0, 1], got {mask_prob}")
    if mask_replace < 0 or random_replace < 0 or mask_replace + random_replace > 1.0:
        raise ConfigError(
            "mask_replace and random_replace must be >= 0 and sum to at most 1 (the rest "
            f"stays unchanged), got {mask_replace} and {random_replace}")
    device = input_ids_BT.device
    excluded = set(special_ids) | {mask_id} | ({pad_id} if pad_id is not None else set())
    excluded_ids = torch.tensor(sorted(excluded), dtype=input_ids_BT.dtype, device=device)
    maskable_BT = ~torch.isin(input_ids_BT, excluded_ids)

    batch_size, seq_len = input_ids_BT.shape
    if word_starts_BT is None:
        draw_BT = torch.rand(batch_size, seq_len, generator=generator, device=device)
    else:
        # word index of each token; index 0 collects tokens before the first word start
        word_index_BT = torch.cumsum(word_starts_BT.long(), dim=1)
        draw_per_word = torch.rand(batch_size, seq_len + 1, generator=generator, device=device)
        draw_BT = torch.gather(draw_per_word, 1, word_index_BT)
    selected_BT = maskable_BT & (draw_BT < mask_prob)

    choice_BT = torch.rand(batch_size, seq_len, generator=generator, device=device)
    to_mask_BT = selected_BT & (choice_BT < mask_replace)
    to_random_BT = (selected_BT & ~to_mask_BT
                    & (choice_BT < mask_replace + random_replace))

    all_ids = torch.arange(vocab_size, dtype=input_ids_BT.dtype, device=device)
    random_pool = all_ids[~torch.isin(all_ids, excluded_ids)]
    if len(random_pool) == 0 and random_replace > 0:
        raise ConfigError("random_replace > 0 needs a non-special token in the vocabulary")
    pick_BT = torch.randint(0, max(len(random_pool), 1), (batch_size, seq_len),
                            generator=generator, device=device)

    inputs_BT = input_ids_BT.clone()
    inputs_BT[to_mask_BT] = mask_id
    if random_replace > 0:
        inputs_BT[to_random_BT] = random_pool[pick_BT[to_random_BT]]
    labels_BT = torch.where(selected_BT, input_ids_BT, torch.full_like(input_ids_BT, IGNORE_INDEX))
    return inputs_BT, labels_BT


# ---------------------------------------------------------------------------- T5 spans


def _noise_counts(length: int, noise_density: float,
                  mean_noise_span_length: float) -> tuple[int, int]:
    """(number of noise tokens, number of noise spans) for a sequence of ``length`` tokens.

    As in T5's ``random_spans_noise_mask``: noise = round(length * density) clamped to
    [1, length - 1], spans = round(noise / mean span length), at least 1. Python's round
    is half-to-even, like the ``tf.round`` T5 uses. Two departures, both for degenerate
    inputs only: sequences shorter than 2 tokens get no noise (T5 masks a padded length of
    2 and truncates, which gives the same result), and the span count is capped at the
    number of non-noise tokens so every non-noise segment is non-empty (T5 would let empty
    segments merge neighbouring spans when density is high and spans are short).
    """
    if length < 2:
        return 0, 0
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(num_noise / mean_noise_span_length), 1)
    return num_noise, min(num_spans, length - num_noise)


def _random_segmentation(num_items: int, num_segments: int,
                         generator: torch.Generator | None) -> Tensor:
    """Lengths of a uniformly random split of ``num_items`` into ``num_segments`` non-empty parts.

    Picks ``num_segments - 1`` distinct cut points among the ``num_items - 1`` gaps.
    """
    first_in_segment = torch.zeros(num_items, dtype=torch.long)
    cuts = torch.randperm(num_items - 1, generator=generator)[: num_segments - 1] + 1
    first_in_segment[cuts] = 1
    return torch.bincount(torch.cumsum(first_in_segment, 0), minlength=num_segments)


def _check_span_config(noise_density: float, mean_noise_span_length: float) -> None:
    if not 0.0 < noise_density < 1.0:
        raise ConfigError(f"noise_density must be in (0, 1), got {noise_density}")
    if mean_noise_span_length < 1.0:
        raise ConfigError(f"mean_noise_span_length must be >= 1, got {mean_noise_span_length}")


def random_spans_noise_mask(length: int, noise_density: float = 0.15,
                            mean_noise_span_length: float = 3.0,
                            generator: torch.Generator | None = None) -> Tensor:
    """bool[length], True on the tokens that T5 span corruption removes.

    The algorithm of T5's ``random_spans_noise_mask`` (Raffel et al. 2020, JMLR,
    arXiv 1910.10683, section 3.1.4 and the released ``t5.data.preprocessors``): with
    N = round(length * noise_density) noise tokens and S = round(N / mean_noise_span_length)
    spans (at least one), split the N noise tokens into S random non-empty segments and the
    length - N other tokens into S random non-empty segments, then interleave them starting
    with a non-noise segment. So the mask has exactly N noise tokens in exactly S spans, its
    first token is never noise and its last token always is. See ``_noise_counts`` for the
    edge cases.
    """
    _check_span_config(noise_density, mean_noise_span_length)
    num_noise, num_spans = _noise_counts(length, noise_density, mean_noise_span_length)
    if num_spans == 0:
        return torch.zeros(length, dtype=torch.bool)
    noise_lengths = _random_segmentation(num_noise, num_spans, generator)
    nonnoise_lengths = _random_segmentation(length - num_noise, num_spans, generator)
    interleaved_lengths = torch.stack([nonnoise_lengths, noise_lengths], dim=1).reshape(-1)
    is_noise_segment = torch.tensor([False, True]).repeat(num_spans)
    return torch.repeat_interleave(is_noise_segment, interleaved_lengths)


def span_corrupt(token_ids: Sequence[int] | Tensor, sentinel_ids: Sequence[int], eos_id: int, *,
                 noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                 generator: torch.Generator | None = None,
                 noise_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """T5 span corruption of one sequence: returns 1-D long tensors ``(inputs, targets)``.

    Raffel et al. 2020 (T5, arXiv 1910.10683, section 3.1.4, figure 2): each noise span is
    replaced in the input by one sentinel, ``sentinel_ids[0]`` for the first span,
    ``sentinel_ids[1]`` for the second, ... (``<extra_id_0>``, ``<extra_id_1>``, ...), and
    the input ends with ``eos_id``. The target lists, for each span in order, its sentinel
    followed by the tokens it replaced.

    Closing convention: the target always ends with one more sentinel
    (``sentinel_ids[num_spans]``) and then ``eos_id``, as the paper states ("plus a final
    sentinel token to mark the end of the output sequence"). The paper's example, with
    "for inviting" and "last" as noise::

        original: Thank you for inviting me to your party last week .
        inputs:   Thank you <X> me to your party <Y> week . </s>
        targets:  <X> for inviting <Y> last <Z> </s>

    Note that T5's released code instead puts a sentinel in the target for each *non-noise*
    span, which gives the same closing sentinel when the sequence ends with non-noise (as
    above) but none when it ends with noise, which its own noise mask always does; so for
    masks from ``random_spans_noise_mask`` our targets are one token longer than T5's.

    ``noise_mask`` (bool[L]) fixes which tokens are noise; by default it is drawn with
    ``random_spans_noise_mask(L, noise_density, mean_noise_span_length, generator)``. Any
    mask works, including one that starts with noise. ``sentinel_ids`` must hold at least
    num_spans + 1 ids; the caller (the tokenizer layer) reserves them.
    """
    tokens_L = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1)
    if noise_mask is None:
        noise_mask = random_spans_noise_mask(len(tokens_L), noise_density,
                                             mean_noise_span_length, generator)
    noise_L = noise_mask.to(torch.bool).reshape(-1)
    previous_noise_L = torch.cat([noise_L.new_zeros(1), noise_L[:-1]])
    span_start_L = noise_L & ~previous_noise_L
    num_spans = int(span_start_L.sum())
    if len(sentinel_ids) < num_spans + 1:
        raise ConfigError(
            f"span corruption of this sequence needs {num_spans + 1} sentinel ids "
            f"({num_spans} spans + the closing one) but got {len(sentinel_ids)}: reserve "
            "more sentinel tokens in the tokenizer or lower the noise density")
    sentinels = torch.as_tensor(list(sentinel_ids), dtype=torch.long)
    span_index_L = torch.cumsum(span_start_L.long(), 0) - 1  # valid on noise tokens
    span_sentinel_L = sentinels[span_index_L.clamp(min=0)]
    eos = torch.tensor([eos_id])

    # input: non-noise tokens kept, the first token of each span becomes its sentinel
    keep_L = ~noise_L | span_start_L
    inputs = torch.cat([torch.where(span_start_L, span_sentinel_L, tokens_L)[keep_L], eos])

    # target: every noise token, preceded by its span's sentinel at the span start
    # (token ids are >= 0, so -1 marks "nothing here" before the flatten)
    before_L = torch.where(span_start_L, span_sentinel_L, torch.full_like(tokens_L, -1))
    pairs = torch.stack([before_L[noise_L], tokens_L[noise_L]], dim=1).reshape(-1)
    targets = torch.cat([pairs[pairs >= 0], sentinels[num_spans:num_spans + 1], eos])
    return inputs, targets


def span_corruption_lengths(raw_length: int, noise_density: float = 0.15,
                            mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """(inputs length, targets length) that ``span_corrupt`` gives for ``raw_length`` tokens
    when the mask comes from ``random_spans_noise_mask`` (the counts do not depend on the
    random draw, so every raw chunk of this length gives the same shapes and batches stack).

    inputs = non-noise tokens + one sentinel per span + eos;
    targets = noise tokens + one sentinel per span + closing sentinel + eos.
    """
    _check_span_config(noise_density, mean_noise_span_length)
    num_noise, num_spans = _noise_counts(raw_length, noise_density, mean_noise_span_length)
    return raw_length - num_noise + num_spans + 1, num_noise + num_spans + 2


def raw_length_for_inputs(inputs_length: int, noise_density: float = 0.15,
                          mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """(raw length, targets length): the longest raw chunk whose corrupted input fits
    ``inputs_length`` tokens, and the target length it then has.

    The counterpart of T5's ``random_spans_helper`` / HF's ``compute_input_and_target_lengths``:
    to fill 512 input tokens at density 0.15 and mean span 3, read chunks of 568 raw tokens
    (T5 gets the same 568; its target length is 114, ours 115 because of the closing
    sentinel, see ``span_corrupt``). The input length is non-decreasing in the raw length,
    so a linear search from ``inputs_length - 1`` finds it.
    """
    def lengths(raw: int) -> tuple[int, int]:
        return span_corruption_lengths(raw, noise_density, mean_noise_span_length)

    raw_length = max(inputs_length - 1, 0)
    while lengths(raw_length + 1)[0] <= inputs_length:
        raw_length += 1
    return raw_length, lengths(raw_length)[1]
