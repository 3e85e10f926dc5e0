"""BERT family: shapes, bidirectional and padding-masked attention, HF parity, MLM loss, fill-mask."""

import dataclasses

import pytest
import torch

from helpers import randomise as _randomise
from parity import assert_logits_match

from lmforge.config import ModelConfig, TokenizerConfig
from lmforge.errors import ConfigError
from lmforge.fill_mask import fill_mask
from lmforge.masking import mask_tokens
from lmforge.models import (BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification, BertModel,
                            build_model, count_parameters, flops_per_token, resolve_model_config)
from lmforge.objectives import masked_lm_loss

TINY = ModelConfig(preset="bert-tiny")
SPECIAL_IDS = [0, 1, 2, 3, 4]


def _batch(batch_size: int = 2, length: int = 12, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    ids_BT = torch.randint(5, 256, (batch_size, length), generator=gen)
    types_BT = torch.randint(0, 2, (batch_size, length), generator=gen)
    mask_BT = torch.ones(batch_size, length, dtype=torch.long)
    mask_BT[-1, length - 4:] = 0  # the last row is padded (with pad id 1)
    ids_BT[-1, length - 4:] = 1
    return ids_BT, mask_BT, types_BT


def test_shapes_and_build_model():
    model = build_model(TINY)
    assert isinstance(model, BertForMaskedLM) and model.output.weight is model.tok_embeddings.weight
    ids_BT, mask_BT, types_BT = _batch()
    assert model(ids_BT).shape == (2, 12, 256)
    assert model(ids_BT, mask_BT, types_BT).shape == (2, 12, 256)
    cfg = dataclasses.replace(resolve_model_config(TINY), num_labels=3)
    assert BertModel(cfg)(ids_BT).shape == (2, 12, 64)
    assert BertForSequenceClassification(cfg)(ids_BT, mask_BT).shape == (2, 3)
    assert BertForTokenClassification(cfg)(ids_BT, mask_BT).shape == (2, 12, 3)
    with pytest.raises(ConfigError, match="num_labels"):
        BertForSequenceClassification(TINY)
    with pytest.raises(ValueError, match="supports 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_attention_is_bidirectional():
    model = _randomise(build_model(TINY))
    ids_BT = torch.randint(5, 256, (1, 12), generator=torch.Generator().manual_seed(1))
    changed_BT = ids_BT.clone()
    changed_BT[0, 9] = (changed_BT[0, 9] + 1 - 5) % 251 + 5
    with torch.no_grad():
        before_BTV, after_BTV = model(ids_BT), model(changed_BT)
    assert (before_BTV[0, :9] - after_BTV[0, :9]).abs().max() > 1e-3  # earlier positions see the later token


def test_padding_mask_hides_padded_positions():
    model = _randomise(build_model(TINY))
    ids_BT, types_BT = torch.randint(5, 256, (1, 8)), torch.randint(0, 2, (1, 8))
    padded_BT = torch.cat([ids_BT, torch.randint(5, 256, (1, 5))], dim=1)
    padded_types_BT = torch.cat([types_BT, torch.ones(1, 5, dtype=torch.long)], dim=1)
    mask_BT = torch.cat([torch.ones(1, 8), torch.zeros(1, 5)], dim=1).long()
    with torch.no_grad():
        alone_BTV = model(ids_BT, token_type_ids_BT=types_BT)
        padded_BTV = model(padded_BT, mask_BT, padded_types_BT)
        unmasked_BTV = model(padded_BT, token_type_ids_BT=padded_types_BT)
    assert (alone_BTV - padded_BTV[:, :8]).abs().max() < 1e-5
    assert (alone_BTV - unmasked_BTV[:, :8]).abs().max() > 1e-3  # without the mask the padding leaks in


def test_param_count_matches_hf_bert_base():
    transformers = pytest.importorskip("transformers")
    from lmforge.interop.hf import hf_config

    cfg = resolve_model_config(ModelConfig(preset="bert-base"))
    with torch.device("meta"):
        ours = count_parameters(BertModel(cfg))
        theirs = sum(p.numel() for p in transformers.BertModel(hf_config(cfg)).parameters())
    assert ours == theirs == 109_482_240
    # the MLM model (build_model): no pooler, plus the head's dense + LayerNorm and the output bias
    assert count_parameters(cfg) == ours - (768 * 768 + 768) + (768 * 768 + 3 * 768) + 30522


def test_flops_count_the_encoder_and_full_attention():
    cfg = resolve_model_config(TINY)
    matmul_params = count_parameters(cfg, include_embeddings=False) + 64 * 256  # + the tied decoder
    assert flops_per_token(cfg, seq_len=32) == 6 * matmul_params + 12 * 2 * 4 * 16 * 32


# --------------------------------------------------------------------------- HF parity


def _hf_logits(hf_model, ids_BT, mask_BT, types_BT):
    with torch.no_grad():
        return hf_model(input_ids=ids_BT, attention_mask=mask_BT, token_type_ids=types_BT).logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("num_labels,cls_name", [(0, "BertForMaskedLM"), (3, "BertForSequenceClassification"),
                                                  (5, "BertForTokenClassification")])
def test_logits_match_hf_both_directions(num_labels, cls_name, dtype):
    transformers = pytest.importorskip("transformers")
    from lmforge.interop.hf import from_hf_model, to_hf_model

    import lmforge.models.bert as bert

    cfg = dataclasses.replace(resolve_model_config(TINY), num_labels=num_labels)
    ids_BT, mask_BT, types_BT = _batch()
    model = _randomise(getattr(bert, cls_name)(cfg))
    hf_model = to_hf_model(model)
    assert type(hf_model).__name__ == cls_name
    with torch.no_grad():
        assert_logits_match(model.to(dtype)(ids_BT, mask_BT, types_BT),
                            _hf_logits(hf_model.to(dtype), ids_BT, mask_BT, types_BT))

    hf_model = getattr(transformers, cls_name)(hf_model.config)
    _randomise(hf_model, seed=3)
    back = from_hf_model(hf_model).eval()
    assert type(back).__name__ == cls_name and back.config.num_labels == num_labels
    with torch.no_grad():
        assert_logits_match(back.to(dtype)(ids_BT, mask_BT, types_BT),
                            _hf_logits(hf_model.to(dtype), ids_BT, mask_BT, types_BT))


def test_state_dict_mapping_round_trips_and_config():
    pytest.importorskip("transformers")
    from lmforge.interop.hf import from_hf_state_dict, hf_config, model_config_from_hf, to_hf_state_dict

    model = _randomise(build_model(TINY))
    hf_state = to_hf_state_dict(model.state_dict(), model.config)
    assert "bert.encoder.layer.1.attention.self.query.weight" in hf_state
    hf_state.pop("cls.predictions.decoder.weight")  # a tied head saved once, as HF does
    back = from_hf_state_dict(hf_state, model.config)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    assert model_config_from_hf(hf_config(model.config)) == dataclasses.replace(model.config, preset="")
    with pytest.raises(ConfigError, match="token-type"):
        hf_config(dataclasses.replace(model.config, preset="", type_vocab_size=0))


def test_mlm_loss_matches_hf():
    pytest.importorskip("transformers")
    from lmforge.interop.hf import to_hf_model

    model = _randomise(build_model(TINY))
    hf_model = to_hf_model(model)
    ids_BT, mask_BT, types_BT = _batch(2, 16)
    inputs_BT, labels_BT = mask_tokens(ids_BT, mask_id=4, vocab_size=256, special_ids=SPECIAL_IDS, pad_id=1,
                                       mask_prob=0.3, generator=torch.Generator().manual_seed(0))
    assert (labels_BT != -100).sum() > 0
    with torch.no_grad():
        ours = masked_lm_loss(model(inputs_BT, mask_BT, types_BT), labels_BT)
        theirs = hf_model(input_ids=inputs_BT, attention_mask=mask_BT, token_type_ids=types_BT,
                          labels=labels_BT).loss
    assert abs(ours.item() - theirs.item()) < 1e-5


# --------------------------------------------------------------------------- training and inference


def test_masked_lm_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = build_model(TINY).train()
    # 35 distinct ids: fresh masks each step (dynamic masking), so the model must learn the batch
    ids_BT = torch.randint(5, 40, (4, 32), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    fixed = mask_tokens(ids_BT, mask_id=4, vocab_size=256, special_ids=SPECIAL_IDS,
                        generator=torch.Generator().manual_seed(99))

    def eval_loss() -> float:
        with torch.no_grad():
            return masked_lm_loss(model(fixed[0]), fixed[1]).item()

    initial = eval_loss()
    for step in range(30):
        inputs_BT, labels_BT = mask_tokens(ids_BT, mask_id=4, vocab_size=256, special_ids=SPECIAL_IDS,
                                           generator=torch.Generator().manual_seed(step))
        loss = masked_lm_loss(model(inputs_BT), labels_BT)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert eval_loss() < 0.7 * initial  # about 5.6 -> 3.1 nats


def test_fill_mask_returns_sorted_top_k():
    from lmforge.tokenize import train_tokenizer

    tokenizer = train_tokenizer(["the cat sat on the mat", "a dog ran"],
                                TokenizerConfig(kind="char", vocab_size=50, min_frequency=1))
    model = build_model(ModelConfig(preset="bert-tiny", vocab_size=tokenizer.vocab_size)).train()
    results = fill_mask(model, tokenizer, "the <mask>at sat on the m<mask>t", top_k=3)
    assert model.training  # restored
    assert len(results) == 2
    for top in results:
        assert len(top) == 3
        probs = [p for _, p in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(isinstance(token, str) for token, _ in top)
    with pytest.raises(ValueError, match="no <mask>"):
        fill_mask(model, tokenizer, "the cat")
