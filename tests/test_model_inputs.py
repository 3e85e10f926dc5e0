"""What the models take besides token ids: padding masks, position ids, document ids (packed
sequences) and input embeddings; and the one attention mask they become, by hand."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from lmforge.config import ModelConfig
from lmforge.models import blocks, build_model
from lmforge.models.blocks import attention_mask_for

DECODERS = ["gpt2-tiny", "llama-tiny", "mistral-tiny", "falcon-tiny"]
OVERRIDES = {"mistral-tiny": {"sliding_window": 4}}  # a window the 9-token rows below cross


def _model(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset=preset, **OVERRIDES.get(preset, {})))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1 if param.dim() > 1 else 1.0)
    return model.eval()


def _ids(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(5, 256, shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- the mask, by hand


def test_a_plain_causal_square_is_sdpas_is_causal_without_a_mask():
    assert attention_mask_for(5, 5, causal=True) == (None, True)
    assert attention_mask_for(5, 5, causal=False) == (None, False)
    assert attention_mask_for(1, 9, causal=True) == (None, False)  # one new token sees every key
    mask, is_causal = attention_mask_for(5, 5, causal=True, sliding_window=3)  # the window hides keys
    assert not is_causal and torch.equal(mask, blocks.attention_mask(0, 5, 3))


def test_padding_and_documents_combine_with_the_causal_mask():
    # one row, keys 0..4: documents [0, 0, 1, 1, 1], the last key padding
    padding_BS = torch.tensor([[1, 1, 1, 1, 0]])
    documents_BS = torch.tensor([[0, 0, 1, 1, 1]])
    mask, is_causal = attention_mask_for(5, 5, causal=True, key_padding_mask_BS=padding_BS,
                                         document_ids_BS=documents_BS)
    expected_TS = torch.tensor([[1, 0, 0, 0, 0],
                                [1, 1, 0, 0, 0],
                                [0, 0, 1, 0, 0],
                                [0, 0, 1, 1, 0],
                                [0, 0, 1, 1, 0]], dtype=torch.bool)
    assert not is_causal and mask.shape == (1, 1, 5, 5) and torch.equal(mask[0, 0], expected_TS)
    # the last 2 queries of the same keys (a chunk after a cached prefix): the last 2 rows
    mask, _ = attention_mask_for(2, 5, causal=True, key_padding_mask_BS=padding_BS, document_ids_BS=documents_BS)
    assert torch.equal(mask[0, 0], expected_TS[3:])
    # bidirectional: documents only
    mask, _ = attention_mask_for(5, 5, causal=False, document_ids_BS=documents_BS)
    assert torch.equal(mask[0, 0], documents_BS[0, :, None] == documents_BS[0, None, :])


def test_a_bias_becomes_one_additive_mask_with_the_dtypes_minimum_where_hidden():
    bias_1HTS = torch.randn(1, 2, 3, 3)
    mask, is_causal = attention_mask_for(3, 3, causal=True, bias_1HTS=bias_1HTS, dtype=torch.float64)
    hidden = torch.finfo(torch.float64).min
    expected = torch.where(torch.ones(3, 3, dtype=torch.bool).tril(), bias_1HTS.double(), hidden)
    assert not is_causal and mask.dtype == torch.float64 and torch.equal(mask, expected)
    assert torch.equal(attention_mask_for(3, 3, causal=False, bias_1HTS=bias_1HTS)[0], bias_1HTS)


# --------------------------------------------------------------------------- kernels stay as fast


def _record_sdpa(monkeypatch) -> list[dict]:
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        calls.append({**kwargs, "heads": (q.shape[1], k.shape[1])})
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(blocks.F, "scaled_dot_product_attention", recording)
    return calls


def test_plain_causal_training_calls_sdpa_with_is_causal_and_no_mask(monkeypatch):
    calls = _record_sdpa(monkeypatch)
    model = _model("llama-tiny").train()  # 4 query heads over 2 key/value heads
    model(_ids(2, 9), targets_BT=_ids(2, 9)).backward()
    assert len(calls) == 2
    assert all(c["attn_mask"] is None and c["is_causal"] and c["enable_gqa"] and c["heads"] == (4, 2) for c in calls)


def test_t5_bias_goes_through_matmul_attention(monkeypatch):
    used = []
    matmul_attention = blocks.matmul_attention
    monkeypatch.setattr(blocks, "matmul_attention", lambda *a, **k: used.append(1) or matmul_attention(*a, **k))
    calls = _record_sdpa(monkeypatch)
    model = build_model(ModelConfig(preset="t5-tiny"))
    model(_ids(2, 6), _ids(2, 4))
    # 2 encoder and 2 decoder self-attentions with the bias; the 2 cross-attentions on SDPA
    assert len(used) == 4 and len(calls) == 2


# --------------------------------------------------------------------------- padding


@pytest.mark.parametrize("preset", DECODERS)
def test_a_padded_batch_gives_each_rows_logits_at_its_real_positions(preset):
    model = _model(preset)
    rows = [_ids(1, 9, seed=1), _ids(1, 6, seed=2)]
    batch_BT = torch.zeros(2, 9, dtype=torch.long)
    mask_BT = torch.zeros(2, 9, dtype=torch.long)
    for index, row in enumerate(rows):  # right padding with id 0
        batch_BT[index, :row.shape[1]], mask_BT[index, :row.shape[1]] = row[0], 1
    with torch.no_grad():
        padded_BTV = model(batch_BT, attention_mask_BT=mask_BT)
        for index, row in enumerate(rows):
            torch.testing.assert_close(padded_BTV[index, :row.shape[1]], model(row)[0], rtol=1e-5, atol=1e-5)


def test_a_padding_mask_with_a_kv_cache_covers_the_cached_positions():
    model = _model("llama-tiny")
    ids_BT = _ids(2, 10)
    mask_BT = torch.ones(2, 10, dtype=torch.long)
    mask_BT[1, 3] = 0  # a hole in the second row: hidden from every later query
    with torch.no_grad():
        full_BTV = model(ids_BT, attention_mask_BT=mask_BT)
        cache = model.new_kv_cache(2, 10)
        pieces = [model(ids_BT[:, :6], cache, attention_mask_BT=mask_BT[:, :6])]
        pieces += [model(ids_BT[:, t:t + 1], cache, attention_mask_BT=mask_BT[:, :t + 1]) for t in range(6, 10)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full_BTV, rtol=1e-5, atol=1e-5)
    assert (full_BTV[1, 4:] - model(ids_BT)[1, 4:]).abs().max() > 1e-3  # the hole does change them


def test_bert_padding_and_packed_documents():
    model = _model("bert-tiny")
    first, second = _ids(1, 7, seed=1), _ids(1, 5, seed=2)
    packed_BT = torch.cat([first, second], dim=1)
    documents_BT = torch.tensor([[0] * 7 + [1] * 5])
    positions_BT = torch.cat([torch.arange(7), torch.arange(5)])[None]
    types_BT = torch.zeros_like(packed_BT)
    with torch.no_grad():
        together_BTV = model(packed_BT, None, types_BT, document_ids_BT=documents_BT, position_ids_BT=positions_BT)
        torch.testing.assert_close(together_BTV[:, :7], model(first), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(together_BTV[:, 7:], model(second), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- packed documents


@pytest.mark.parametrize("preset", DECODERS)
def test_packed_documents_give_each_documents_own_logits(preset):
    model = _model(preset)
    first, second = _ids(1, 5, seed=1), _ids(1, 7, seed=2)
    packed_BT = torch.cat([first, second], dim=1)
    documents_BT = torch.tensor([[0] * 5 + [1] * 7])
    positions_BT = torch.cat([torch.arange(5), torch.arange(7)])[None]  # restart per document
    with torch.no_grad():
        packed_BTV = model(packed_BT, document_ids_BT=documents_BT, position_ids_BT=positions_BT)
        torch.testing.assert_close(packed_BTV[:, :5], model(first), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(packed_BTV[:, 5:], model(second), rtol=1e-5, atol=1e-5)
        # without document ids the second document sees the first
        assert (model(packed_BT, position_ids_BT=positions_BT)[:, 5:] - packed_BTV[:, 5:]).abs().max() > 1e-3


def test_default_position_ids_are_the_positions_after_the_cache():
    model = _model("gpt2-tiny")
    ids_BT = _ids(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(ids_BT, position_ids_BT=torch.arange(8).expand(2, 8)), model(ids_BT),
                                   rtol=0, atol=0)


# --------------------------------------------------------------------------- input embeddings


@pytest.mark.parametrize("preset", DECODERS + ["bert-tiny"])
def test_input_embeddings_equal_to_the_ids_embedding_give_the_same_output(preset):
    model = _model(preset)
    ids_BT = _ids(2, 8)
    with torch.no_grad():
        embeds_BTD = model.tok_embeddings(ids_BT)
        torch.testing.assert_close(model(inputs_embeds_BTD=embeds_BTD), model(ids_BT), rtol=0, atol=0)
    with pytest.raises(ValueError, match="exactly one of"):
        model(ids_BT, inputs_embeds_BTD=embeds_BTD)


def test_t5_input_embeddings_and_the_heads_loss():
    model = _model("t5-tiny")
    ids_BT, decoder_BU, targets_BU = _ids(2, 6), _ids(2, 4, seed=2), _ids(2, 4, seed=3)
    targets_BU[1, 2:] = -100
    with torch.no_grad():
        logits_BUV = model(ids_BT, decoder_BU)
        embeds_BTD = model.tok_embeddings(ids_BT)
        torch.testing.assert_close(model(inputs_embeds_BTD=embeds_BTD, decoder_input_ids_BU=decoder_BU), logits_BUV,
                                   rtol=0, atol=0)
    loss = model(ids_BT, decoder_BU, targets_BU=targets_BU)
    expected = F.cross_entropy(logits_BUV.flatten(0, 1), targets_BU.flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_v1_0_head_rescales_before_the_tied_product():
    model = _model("t5-tiny")
    v1_1 = build_model(dataclasses.replace(model.config, preset="", tie_embeddings=False, feed_forward="gated-gelu"))
    assert model.output.logit_scale == 64 ** -0.5 and v1_1.output.logit_scale == 1.0
    h_BUD = torch.randn(2, 3, 64)
    torch.testing.assert_close(model.output(h_BUD), (h_BUD * 64 ** -0.5) @ model.tok_embeddings.weight.t())
