"""T5 family: relative position buckets, HF parity (v1.0 and v1.1), cached generation, sizes, overfitting."""

import dataclasses

import pytest
import torch

from helpers import randomise
from parity import assert_logits_match, float64_hf

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.generate import generate_seq2seq
from lmforge.masking import span_corrupt
from lmforge.models import T5Model, build_model, count_parameters, flops_per_token, resolve_model_config
from lmforge.models.blocks import relative_position_bucket
from lmforge.objectives import seq2seq_loss, shift_right

TINY = ModelConfig(preset="t5-tiny")
# v1.0: ReLU, tied + rescaled head. v1.1: gated GELU, untied head, head_dim apart from dim/heads,
# a deeper decoder. Few buckets and a short max_distance so 12 positions reach the log buckets.
V1_0 = resolve_model_config(dataclasses.replace(TINY, relative_attention_num_buckets=8,
                                                relative_attention_max_distance=10))
V1_1 = resolve_model_config(dataclasses.replace(V1_0, feed_forward="gated-gelu", tie_embeddings=False,
                                                head_dim=24, hidden_dim=96, num_decoder_layers=3))


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    # Matrices N(0, 0.1): T5 attention has no 1/sqrt(K), and at 0.2 the scores saturate the
    # softmax so far that float32 rounding alone moved the logits by ~390 ulps of their scale
    # (against the float64 forward), beyond what a parity bound should have to allow.
    return randomise(model, seed, matrix_std=0.1, vector_std=0.5)


def _batch(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    ids_BT = torch.randint(2, 256, (2, 12), generator=gen)
    mask_BT = torch.ones(2, 12, dtype=torch.long)
    mask_BT[1, 8:] = 0  # the second row is padded
    ids_BT[1, 8:] = 0
    decoder_ids_BU = torch.randint(2, 256, (2, 7), generator=gen)
    decoder_ids_BU[:, 0] = 0  # the decoder start (pad)
    return ids_BT, mask_BT, decoder_ids_BU


def test_relative_position_bucket_hand_computed():
    # bidirectional, 32 buckets: 16 per direction, exact below 8, log-spaced up to 128;
    # keys after the query (positive) are offset by 16
    rel = torch.tensor([0, -1, -7, -8, -16, -32, -64, -127, -1000, 1, 7, 20])
    expected = torch.tensor([0, 1, 7, 8, 10, 12, 14, 15, 15, 17, 23, 26])
    assert torch.equal(relative_position_bucket(rel, bidirectional=True), expected)
    # unidirectional (decoder): 32 buckets, exact below 16; keys after the query fall in 0
    rel = torch.tensor([5, 0, -5, -15, -16, -32, -64, -127, -1000])
    expected = torch.tensor([0, 0, 5, 15, 16, 21, 26, 31, 31])
    assert torch.equal(relative_position_bucket(rel, bidirectional=False), expected)


def test_shapes_build_model_and_validation():
    model = build_model(TINY)
    assert isinstance(model, T5Model) and model.output.weight is model.tok_embeddings.weight
    ids_BT, mask_BT, decoder_ids_BU = _batch()
    assert model(ids_BT, decoder_ids_BU, mask_BT).shape == (2, 7, 256)
    assert model.encode(ids_BT).shape == (2, 12, 64)
    untied = T5Model(V1_1)
    assert untied.output.weight is not untied.tok_embeddings.weight and len(untied.decoder_layers) == 3
    assert untied.encoder_layers[0].attn.q_proj.out_features == 4 * 24
    with pytest.raises(ConfigError, match="t5"):
        resolve_model_config(ModelConfig(preset="t5-tiny", num_kv_heads=2))
    with pytest.raises(ConfigError, match="t5 fields"):
        resolve_model_config(ModelConfig(preset="llama-tiny", head_dim=8))


def test_param_counts_match_hf_on_meta():
    transformers = pytest.importorskip("transformers")
    from lmforge.interop.hf import hf_config

    for preset, expected in (("t5-small", 60_506_624), ("t5-v1_1-small", 76_961_152)):
        cfg = resolve_model_config(ModelConfig(preset=preset))
        with torch.device("meta"):
            hf_model = transformers.T5ForConditionalGeneration(hf_config(cfg))
            if not cfg.tie_embeddings and hf_model.lm_head.weight is hf_model.shared.weight:
                # transformers 5 ties every head built from a config; v1.1 checkpoints have their own
                hf_model.lm_head.weight = torch.nn.Parameter(torch.empty_like(hf_model.shared.weight))
            theirs = sum(p.numel() for p in hf_model.parameters())
        assert count_parameters(cfg) == theirs == expected, preset


def test_flops_count_both_stacks():
    cfg = resolve_model_config(TINY)
    matmul_params = count_parameters(cfg, include_embeddings=False) + 64 * 256  # + the tied head
    # encoder self-attention once, decoder self- and cross-attention
    assert flops_per_token(cfg, seq_len=32) == 6 * matmul_params + 12 * (2 + 2 * 2) * 4 * 16 * 32


# --------------------------------------------------------------------------- HF parity


def _hf_logits(hf_model, ids_BT, mask_BT, decoder_ids_BU):
    with torch.no_grad():
        return hf_model(input_ids=ids_BT, attention_mask=mask_BT, decoder_input_ids=decoder_ids_BU).logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("cfg", [V1_0, V1_1], ids=["v1.0", "v1.1"])
def test_logits_match_hf_both_directions(cfg, dtype):
    transformers = pytest.importorskip("transformers")
    from lmforge.interop.hf import from_hf_model, model_config_from_hf, to_hf_model

    ids_BT, mask_BT, decoder_ids_BU = _batch()
    model = _randomise(T5Model(cfg))
    hf_model = to_hf_model(model)
    assert (hf_model.lm_head.weight is hf_model.shared.weight) == cfg.tie_embeddings
    assert model_config_from_hf(hf_model.config) == dataclasses.replace(cfg, preset="", max_seq_len=512)
    with torch.no_grad(), float64_hf(dtype):
        assert_logits_match(model.to(dtype)(ids_BT, decoder_ids_BU, mask_BT),
                            _hf_logits(hf_model.to(dtype), ids_BT, mask_BT, decoder_ids_BU))

    hf_model = transformers.T5ForConditionalGeneration(hf_model.config)
    if not cfg.tie_embeddings:
        hf_model.lm_head.weight = torch.nn.Parameter(hf_model.shared.weight.detach().clone())
    _randomise(hf_model, seed=3)
    back = from_hf_model(hf_model).eval()
    with torch.no_grad(), float64_hf(dtype):
        assert_logits_match(back.to(dtype)(ids_BT, decoder_ids_BU, mask_BT),
                            _hf_logits(hf_model.to(dtype), ids_BT, mask_BT, decoder_ids_BU))


def test_state_dict_mapping_round_trips_and_unsupported_config():
    transformers = pytest.importorskip("transformers")
    from lmforge.interop.hf import from_hf_state_dict, model_config_from_hf, to_hf_state_dict

    model = _randomise(T5Model(V1_1))
    hf_state = to_hf_state_dict(model.state_dict(), model.config)
    assert "decoder.block.2.layer.2.DenseReluDense.wi_1.weight" in hf_state
    back = from_hf_state_dict(hf_state, model.config)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="feed_forward_proj"):
        model_config_from_hf(transformers.T5Config(feed_forward_proj="gated-silu"))


# --------------------------------------------------------------------------- generation


def test_cached_generation_matches_uncached_greedy_and_hf():
    pytest.importorskip("transformers")
    from lmforge.interop.hf import to_hf_model

    model = _randomise(T5Model(V1_1))
    ids_BT, mask_BT, _ = _batch()
    tokens_BN = torch.stack(list(generate_seq2seq(model, ids_BT, 8, temperature=0.0, attention_mask_BT=mask_BT)),
                            dim=1)
    assert tokens_BN.shape == (2, 8)

    # uncached: the whole decoder prefix re-run at every step
    decoder_ids_BU = torch.zeros(2, 1, dtype=torch.long)
    with torch.no_grad():
        for _ in range(8):
            next_B = model(ids_BT, decoder_ids_BU, mask_BT)[:, -1].argmax(-1)
            decoder_ids_BU = torch.cat([decoder_ids_BU, next_B[:, None]], dim=1)
    assert torch.equal(decoder_ids_BU[:, 1:], tokens_BN)

    # HF generate sizes its cache by the encoder depth, so compare a symmetric v1.1 model
    model = _randomise(T5Model(dataclasses.replace(V1_1, num_decoder_layers=0)), seed=5)
    tokens_BN = torch.stack(list(generate_seq2seq(model, ids_BT, 8, temperature=0.0, attention_mask_BT=mask_BT)),
                            dim=1)
    hf_model = to_hf_model(model)
    hf_model.generation_config.eos_token_id = None  # no early stop: compare all 8 tokens
    with torch.no_grad():
        theirs = hf_model.generate(input_ids=ids_BT, attention_mask=mask_BT, max_new_tokens=8, min_new_tokens=8,
                                   do_sample=False, decoder_start_token_id=0, eos_token_id=None)
    assert torch.equal(theirs[:, 1:], tokens_BN)


def test_generation_stops_at_eos_and_restores_mode():
    model = T5Model(V1_0).train()
    ids_BT, _, _ = _batch()
    out = list(generate_seq2seq(model, ids_BT[:1], 5, temperature=1.0, top_k=5, eos_id=3,
                                generator=torch.Generator().manual_seed(0)))
    assert model.training and 1 <= len(out) <= 5
    assert all(step.shape == (1,) for step in out)


# --------------------------------------------------------------------------- training


def test_span_corruption_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = build_model(TINY).train()
    sentinels, eos_id, pad_id = list(range(255, 245, -1)), 1, 0
    gen = torch.Generator().manual_seed(0)
    pairs = [span_corrupt(torch.randint(5, 60, (24,), generator=gen), sentinels, eos_id, generator=gen)
             for _ in range(4)]
    inputs_BT = torch.stack([p[0] for p in pairs])  # same lengths for a fixed raw length
    labels_BU = torch.stack([p[1] for p in pairs])
    decoder_ids_BU = shift_right(labels_BU, decoder_start_id=pad_id, pad_id=pad_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_now():
        return seq2seq_loss(model(inputs_BT, decoder_ids_BU), labels_BU)

    with torch.no_grad():
        initial = loss_now().item()
    for _ in range(30):
        loss = loss_now()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert loss_now().item() < 0.5 * initial
