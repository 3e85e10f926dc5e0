"""BERT masking and T5 span corruption: exact cases worked out by hand, rates, properties."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.errors import ConfigError
from lmforge.masking import (
    mask_tokens,
    random_spans_noise_mask,
    raw_length_for_inputs,
    span_corrupt,
    span_corruption_lengths,
)

# lmforge special ids: <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4
BOS, PAD, EOS, UNK, MASK = 0, 1, 2, 3, 4
SPECIALS = [BOS, PAD, EOS, UNK, MASK]
# two rows: specials at the ends, padding in the second
IDS_BT = torch.tensor([[0, 10, 11, 12, 13, 2],
                       [0, 14, 15, 2, 1, 1]])
MASKABLE_BT = IDS_BT >= 5


def _mask(ids, **kwargs):
    kwargs.setdefault("mask_id", MASK)
    kwargs.setdefault("vocab_size", 20)
    kwargs.setdefault("special_ids", SPECIALS)
    return mask_tokens(ids, **kwargs)


# ---------------------------------------------------------------------------- mask_tokens


def test_mask_everything_with_mask_token_leaves_specials_and_pad_alone():
    inputs, labels = _mask(IDS_BT, mask_prob=1.0, mask_replace=1.0, random_replace=0.0)
    assert inputs.tolist() == [[0, 4, 4, 4, 4, 2], [0, 4, 4, 2, 1, 1]]
    assert labels.tolist() == [[-100, 10, 11, 12, 13, -100], [-100, 14, 15, -100, -100, -100]]
    assert IDS_BT.tolist()[0] == [0, 10, 11, 12, 13, 2]  # the input is not modified in place


def test_select_but_keep_gives_labels_with_unchanged_inputs():
    inputs, labels = _mask(IDS_BT, mask_prob=1.0, mask_replace=0.0, random_replace=0.0)
    assert torch.equal(inputs, IDS_BT)
    assert labels.tolist() == [[-100, 10, 11, 12, 13, -100], [-100, 14, 15, -100, -100, -100]]


def test_random_replacement_draws_only_non_special_tokens():
    # vocabulary 0..5: the only non-special token is 5, so every random draw is 5
    ids = torch.tensor([[0, 5, 5, 5, 2]])
    inputs, labels = _mask(ids, vocab_size=6, mask_prob=1.0, mask_replace=0.0, random_replace=1.0)
    assert inputs.tolist() == [[0, 5, 5, 5, 2]]
    assert labels.tolist() == [[-100, 5, 5, 5, -100]]
    # vocabulary 0..7 with 6 also declared special: draws come from {5, 7} only
    ids = torch.full((4, 50), 5)
    inputs, labels = _mask(ids, vocab_size=8, special_ids=SPECIALS + [6], mask_prob=1.0,
                           mask_replace=0.0, random_replace=1.0,
                           generator=torch.Generator().manual_seed(0))
    assert set(inputs.unique().tolist()) == {5, 7}
    assert (labels == 5).all()


def test_pad_id_outside_special_ids_is_never_selected():
    inputs, labels = _mask(IDS_BT, special_ids=[BOS, EOS], pad_id=PAD, mask_prob=1.0)
    assert (labels[IDS_BT == PAD] == -100).all()
    assert (inputs[IDS_BT == PAD] == PAD).all()


def test_mask_prob_zero_selects_nothing():
    inputs, labels = _mask(IDS_BT, mask_prob=0.0)
    assert torch.equal(inputs, IDS_BT)
    assert (labels == -100).all()


def test_same_generator_seed_gives_same_corruption():
    ids = torch.randint(5, 20, (4, 32), generator=torch.Generator().manual_seed(1))
    a = _mask(ids, generator=torch.Generator().manual_seed(7))
    b = _mask(ids, generator=torch.Generator().manual_seed(7))
    c = _mask(ids, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_rates_are_15_percent_then_80_10_10():
    generator = torch.Generator().manual_seed(0)
    vocab_size = 1000
    ids = torch.randint(5, vocab_size, (64, 512), generator=generator)
    ids[:, 0], ids[:, -1], ids[:8, -100:] = BOS, EOS, PAD
    inputs, labels = _mask(ids, vocab_size=vocab_size, generator=generator)
    maskable = ids >= 5
    selected = labels != -100
    assert not selected[~maskable].any()
    assert torch.equal(labels[selected], ids[selected])
    num_selected = int(selected.sum())
    assert num_selected / int(maskable.sum()) == pytest.approx(0.15, abs=0.01)
    became_mask = int((inputs[selected] == MASK).sum()) / num_selected
    unchanged = int((inputs[selected] == ids[selected]).sum()) / num_selected
    randomised = 1.0 - became_mask - unchanged
    assert became_mask == pytest.approx(0.8, abs=0.03)
    # a random draw equals the original with probability 1/995: counted as unchanged
    assert randomised == pytest.approx(0.1, abs=0.02)
    assert unchanged == pytest.approx(0.1, abs=0.02)
    assert ((inputs[selected] >= 5) | (inputs[selected] == MASK)).all()
    assert torch.equal(inputs[~selected], ids[~selected])


def _word_index(word_starts_BT):
    return torch.cumsum(word_starts_BT.long(), dim=1)


def test_whole_word_masking_never_splits_a_word_and_keeps_the_token_rate():
    generator = torch.Generator().manual_seed(3)
    batch, seq_len = 64, 256
    ids = torch.randint(5, 100, (batch, seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = BOS, EOS
    # words of 1-4 tokens; <s> and </s> start words of their own
    word_starts = torch.rand(batch, seq_len, generator=generator) < 0.4
    word_starts[:, 0] = word_starts[:, 1] = word_starts[:, -1] = True
    inputs, labels = _mask(ids, vocab_size=100, generator=generator, word_starts_BT=word_starts)
    selected = labels != -100
    assert not selected[:, 0].any() and not selected[:, -1].any()
    words = _word_index(word_starts)
    for row in range(batch):
        for word in words[row].unique():
            in_word = words[row] == word
            assert selected[row][in_word].all() or not selected[row][in_word].any()
    rate = int(selected.sum()) / int((ids >= 5).sum())
    assert rate == pytest.approx(0.15, abs=0.02)
    became_mask = int((inputs[selected] == MASK).sum()) / int(selected.sum())
    assert became_mask == pytest.approx(0.8, abs=0.04)


def test_whole_word_selection_with_forced_probability_is_exact():
    # words: [<s>] [10 11] [12] [13 14 15] [</s>]; a special inside a word is still skipped
    ids = torch.tensor([[0, 10, 11, 12, 13, 3, 15, 2]])
    starts = torch.tensor([[True, True, False, True, True, False, False, True]])
    inputs, labels = _mask(ids, mask_prob=1.0, word_starts_BT=starts)
    assert labels.tolist() == [[-100, 10, 11, 12, 13, -100, 15, -100]]
    inputs, labels = _mask(ids, mask_prob=0.0, word_starts_BT=starts)
    assert (labels == -100).all()


def test_bad_mask_probabilities_raise_config_error():
    with pytest.raises(ConfigError, match="sum to at most 1"):
        _mask(IDS_BT, mask_replace=0.9, random_replace=0.2)
    with pytest.raises(ConfigError, match="mask_prob"):
        _mask(IDS_BT, mask_prob=1.5)


# ---------------------------------------------------------------------------- T5 spans

# The example of Raffel et al. 2020, figure 2, one id per word (ids >= 100 are words).
WORDS = "Thank you for inviting me to your party last week .".split()
WORD_IDS = [100 + i for i in range(len(WORDS))]
SENTINELS = [32099, 32098, 32097, 32096]  # <extra_id_0>, <extra_id_1>, ... as in T5
X, Y, Z = SENTINELS[:3]


def test_span_corrupt_reproduces_the_paper_example():
    noise = torch.tensor([w in ("for", "inviting", "last") for w in WORDS])
    inputs, targets = span_corrupt(WORD_IDS, SENTINELS, EOS, noise_mask=noise)
    ids = dict(zip(WORDS, WORD_IDS))
    # "Thank you <X> me to your party <Y> week . </s>"
    assert inputs.tolist() == [ids["Thank"], ids["you"], X, ids["me"], ids["to"], ids["your"],
                               ids["party"], Y, ids["week"], ids["."], EOS]
    # "<X> for inviting <Y> last <Z> </s>"
    assert targets.tolist() == [X, ids["for"], ids["inviting"], Y, ids["last"], Z, EOS]
    assert inputs.dtype == targets.dtype == torch.long
    # a tensor input gives the same result
    same = span_corrupt(torch.tensor(WORD_IDS), SENTINELS, EOS, noise_mask=noise)
    assert torch.equal(same[0], inputs) and torch.equal(same[1], targets)


def test_span_corrupt_with_noise_at_both_ends_and_no_noise():
    noise = torch.tensor([True, False, False, True, True])
    inputs, targets = span_corrupt([5, 6, 7, 8, 9], SENTINELS, EOS, noise_mask=noise)
    assert inputs.tolist() == [X, 6, 7, Y, EOS]
    assert targets.tolist() == [X, 5, Y, 8, 9, Z, EOS]
    no_noise = torch.zeros(2, dtype=torch.bool)
    inputs, targets = span_corrupt([5, 6], SENTINELS, EOS, noise_mask=no_noise)
    assert inputs.tolist() == [5, 6, EOS]
    assert targets.tolist() == [X, EOS]


def test_span_corrupt_needs_enough_sentinels():
    noise = torch.tensor([True, False, True, False, True])
    with pytest.raises(ConfigError, match="needs 4 sentinel ids"):
        span_corrupt([5, 6, 7, 8, 9], SENTINELS[:3], EOS, noise_mask=noise)


def _num_spans(mask):
    previous = torch.cat([torch.zeros(1, dtype=torch.bool), mask[:-1]])
    return int((mask & ~previous).sum())


def test_noise_mask_has_the_published_counts():
    generator = torch.Generator().manual_seed(0)
    # 100 tokens: round(15.0) = 15 noise tokens in round(15 / 3) = 5 spans
    for _ in range(20):
        mask = random_spans_noise_mask(100, 0.15, 3.0, generator)
        assert mask.dtype == torch.bool and mask.shape == (100,)
        assert int(mask.sum()) == 15
        assert _num_spans(mask) == 5
        assert not mask[0] and mask[-1]
    # 568 tokens (T5's raw length for 512 inputs): round(85.2) = 85 noise, round(28.33) = 28 spans
    mask = random_spans_noise_mask(568, generator=generator)
    assert (int(mask.sum()), _num_spans(mask)) == (85, 28)
    # 10 tokens: round(1.5) = 2 noise tokens, max(round(0.67), 1) = 1 span
    mask = random_spans_noise_mask(10, generator=generator)
    assert (int(mask.sum()), _num_spans(mask)) == (2, 1)
    assert mask.tolist() == [False] * 8 + [True, True]  # one span, which must come last
    # too short to corrupt
    assert random_spans_noise_mask(1).tolist() == [False]
    assert random_spans_noise_mask(0).tolist() == []


def test_noise_mask_is_deterministic_per_seed_and_varies_across_seeds():
    masks = [random_spans_noise_mask(64, 0.3, 2.0, torch.Generator().manual_seed(seed))
             for seed in (1, 1, 2)]
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])


def test_lengths_helper_matches_span_corrupt_and_t5():
    # T5's random_spans_helper: 568 raw tokens fill 512 inputs (targets 114 there, 115 here)
    assert raw_length_for_inputs(512) == (568, 115)
    assert span_corruption_lengths(568) == (512, 115)
    assert span_corruption_lengths(569)[0] == 513
    generator = torch.Generator().manual_seed(0)
    for raw_length in (2, 10, 37, 100, 568):
        inputs_length, targets_length = span_corruption_lengths(raw_length, 0.3, 2.5)
        ids = torch.randint(5, 100, (raw_length,), generator=generator)
        inputs, targets = span_corrupt(ids, list(range(1000, 1300)), EOS, noise_density=0.3,
                                       mean_noise_span_length=2.5, generator=generator)
        assert (len(inputs), len(targets)) == (inputs_length, targets_length)


def _reconstruct(inputs, targets, sentinels):
    """Undo span corruption: swap each input sentinel for the tokens after it in the target."""
    sentinel_set = set(sentinels)
    spans, current = {}, None
    for token in targets[:-1]:  # drop eos
        if token in sentinel_set:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out = []
    for token in inputs[:-1]:
        out.extend(spans[token] if token in sentinel_set else [token])
    return out


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.integers(5, 500), min_size=0, max_size=80),
       density=st.floats(0.05, 0.5), mean_span=st.floats(1.0, 5.0), seed=st.integers(0, 2**31))
def test_span_corruption_round_trips(ids, density, mean_span, seed):
    sentinels = list(range(1000, 1100))
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = span_corrupt(ids, sentinels, EOS, noise_density=density,
                                   mean_noise_span_length=mean_span, generator=generator)
    inputs, targets = inputs.tolist(), targets.tolist()
    assert inputs[-1] == EOS and targets[-1] == EOS
    assert (len(inputs), len(targets)) == span_corruption_lengths(len(ids), density, mean_span)
    num_spans = sum(token in sentinels for token in inputs)
    # sentinels appear in order, once each; the target closes with the next one
    assert [t for t in inputs if t in sentinels] == sentinels[:num_spans]
    assert [t for t in targets if t in sentinels] == sentinels[:num_spans + 1]
    assert _reconstruct(inputs, targets, sentinels) == ids
