"""Model shapes, causality, KV cache, tying, init, parameter/FLOP counts and config resolution."""

import dataclasses
import math

import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models import PRESETS, build_model, count_parameters, describe_presets, flops_per_token
from lmforge.models import resolve_model_config
from lmforge.models.blocks import attention_mask

TINY_PRESETS = ["gpt2-tiny", "llama-tiny", "mistral-tiny", "falcon-tiny"]


def _model(preset: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset=preset, **overrides))
    # Larger weights than the init so that logits differ clearly between tokens and positions.
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1 if param.dim() > 1 else 1.0)
    return model.eval()


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_forward_shape_and_dtype(preset):
    model = _model(preset)
    logits_BTV = model(torch.randint(0, 256, (3, 17)))
    assert logits_BTV.shape == (3, 17, 256)
    assert logits_BTV.dtype == torch.float32


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_future_tokens_do_not_change_earlier_logits(preset):
    model = _model(preset)
    ids_BT = torch.randint(0, 256, (2, 12))
    changed_BT = ids_BT.clone()
    changed_BT[:, 7] = (changed_BT[:, 7] + 1) % 256
    before, after = model(ids_BT), model(changed_BT)
    torch.testing.assert_close(before[:, :7], after[:, :7], rtol=0, atol=1e-6)
    assert (before[:, 7:] - after[:, 7:]).abs().max() > 1e-3


@pytest.mark.parametrize("preset,overrides", [
    ("gpt2-tiny", {}),
    ("llama-tiny", {}),
    ("llama-tiny", {"num_kv_heads": 1}),
    ("mistral-tiny", {}),  # window 8: the prefill, the chunk and every single token reach past it
    ("mistral-tiny", {"sliding_window": 3}),  # a 4-token chunk wider than the window
    ("falcon-tiny", {}),
])
def test_kv_cache_decoding_matches_full_forward(preset, overrides):
    model = _model(preset, **overrides)
    ids_BT = torch.randint(0, 256, (2, 24))
    full_BTV = model(ids_BT)
    cache = model.new_kv_cache(batch_size=2, max_len=24)
    # Prefill a prompt, then a multi-token chunk after it (bottom-right causal mask), then
    # one token at a time.
    pieces = [model(ids_BT[:, :9], cache), model(ids_BT[:, 9:13], cache)]
    pieces += [model(ids_BT[:, t:t + 1], cache) for t in range(13, 24)]
    assert cache.length == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full_BTV, rtol=0, atol=1e-5)


def test_attention_mask_is_causal_and_windowed_by_hand():
    # Queries at positions 3..5 over keys 0..5, window 3: key in (t-3, t].
    expected_TS = torch.tensor([[0, 1, 1, 1, 0, 0],
                                [0, 0, 1, 1, 1, 0],
                                [0, 0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(attention_mask(3, 3, sliding_window=3), expected_TS)
    assert torch.equal(attention_mask(0, 4, sliding_window=0), torch.ones(4, 4, dtype=torch.bool).tril())


def test_token_beyond_the_sliding_window_does_not_influence_later_positions():
    # Each layer moves information at most W-1 positions: with L=2 layers and W=8 a token at
    # position 2 reaches position 2 + 2*7 = 16 and no further.
    model = _model("mistral-tiny")
    ids_BT = torch.randint(0, 256, (2, 24))
    changed_BT = ids_BT.clone()
    changed_BT[:, 2] = (changed_BT[:, 2] + 1) % 256
    before, after = model(ids_BT), model(changed_BT)
    torch.testing.assert_close(before[:, 17:], after[:, 17:], rtol=0, atol=1e-6)
    assert (before[:, 16] - after[:, 16]).abs().max() > 1e-4
    # The same model without a window sees the change everywhere after position 2.
    full = dataclasses.replace(model.config, sliding_window=0, preset="")
    unwindowed = build_model(full).eval()
    unwindowed.load_state_dict(model.state_dict())
    assert (unwindowed(ids_BT)[:, 17:] - unwindowed(changed_BT)[:, 17:]).abs().max() > 1e-4


def test_window_at_least_the_sequence_equals_plain_causal_attention():
    model = _model("mistral-tiny")
    wide = build_model(dataclasses.replace(model.config, sliding_window=24, preset="")).eval()
    off = build_model(dataclasses.replace(model.config, sliding_window=0, preset="")).eval()
    wide.load_state_dict(model.state_dict())
    off.load_state_dict(model.state_dict())
    ids_BT = torch.randint(0, 256, (2, 24))
    torch.testing.assert_close(wide(ids_BT), off(ids_BT), rtol=0, atol=0)
    assert (model(ids_BT) - off(ids_BT)).abs().max() > 1e-4  # window 8 < 24 does change the output


def test_parallel_residual_block_formula():
    # Falcon (and GPT-J, PaLM): x + attn(ln(x)) + mlp(ln(x)), one shared LayerNorm with a bias.
    block = _model("falcon-tiny").layers[0]
    assert block.mlp_norm is None and block.attn_norm.bias is not None
    assert block.attn.q_proj.bias is None and block.mlp.approximate == "none"
    x_BTD = torch.randn(2, 5, 64)
    h_BTD = torch.nn.functional.layer_norm(x_BTD, (64,), block.attn_norm.weight, block.attn_norm.bias, 1e-5)
    expected_BTD = x_BTD + block.attn(h_BTD) + block.mlp(h_BTD)
    torch.testing.assert_close(block(x_BTD), expected_BTD, rtol=0, atol=1e-6)
    # The sequential block (Llama, Mistral) feeds the attention output into the MLP's norm.
    block = _model("mistral-tiny").layers[0]
    y_BTD = x_BTD + block.attn(block.attn_norm(x_BTD))
    torch.testing.assert_close(block(x_BTD), y_BTD + block.mlp(block.mlp_norm(y_BTD)), rtol=0, atol=1e-6)


def test_mqa_and_tying_overrides_apply():
    cfg = resolve_model_config(ModelConfig(preset="llama-tiny", num_kv_heads=1))
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.tie_embeddings) == (4, 1, False)


def test_cache_and_context_limits_raise():
    model = _model("llama-tiny")
    cache = model.new_kv_cache(batch_size=1, max_len=8)
    model(torch.zeros(1, 8, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="cache holds 8"):
        model(torch.zeros(1, 1, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="supports 64"):
        model(torch.zeros(1, 65, dtype=torch.long))
    cache.reset()
    assert cache.length == 0


def test_tied_embeddings_share_storage_and_untied_do_not():
    tied = build_model(ModelConfig(preset="gpt2-tiny"))
    assert tied.output.weight is tied.tok_embeddings.weight
    assert tied.output.weight.data_ptr() == tied.tok_embeddings.weight.data_ptr()
    untied = build_model(ModelConfig(preset="llama-tiny"))
    assert untied.output.weight.data_ptr() != untied.tok_embeddings.weight.data_ptr()
    # A tied model counts the shared matrix once: 256 x 64 fewer parameters than untied.
    untied_gpt2 = build_model(dataclasses.replace(tied.config, tie_embeddings=False, preset=""))
    assert count_parameters(untied_gpt2) - count_parameters(tied) == 256 * 64


def test_init_scales_residual_projections_and_zeros_biases():
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="gpt2", vocab_size=512, dim=256, num_layers=8, num_heads=4, bias=True))
    std, residual_std = 0.02, 0.02 / math.sqrt(2 * 8)
    assert model.layers[0].attn.q_proj.weight.std().item() == pytest.approx(std, rel=0.05)
    assert model.layers[3].attn.out_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.layers[5].mlp.out_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.tok_embeddings.weight.std().item() == pytest.approx(std, rel=0.05)
    assert torch.count_nonzero(model.layers[1].mlp.in_proj.bias) == 0
    assert torch.equal(model.norm.weight, torch.ones(256)) and torch.count_nonzero(model.norm.bias) == 0


def test_rope_tables_are_not_saved_and_survive_meta_init():
    with torch.device("meta"):
        model = build_model(ModelConfig(preset="llama-tiny"))
    assert not any("rope" in key for key in model.state_dict())
    model.to_empty(device="cpu")
    model.init_weights()
    reference = build_model(ModelConfig(preset="llama-tiny"))
    torch.testing.assert_close(model.rope_cos_T1K, reference.rope_cos_T1K, rtol=0, atol=0)
    # Position 1 of the first frequency (theta^0 = 1): cos(1), and the sine table's sign layout.
    assert model.rope_cos_T1K[1, 0, 0].item() == pytest.approx(math.cos(1.0))
    assert model.rope_sin_T1K[1, 0, 0].item() == pytest.approx(-math.sin(1.0))
    assert model.rope_sin_T1K[1, 0, 8].item() == pytest.approx(math.sin(1.0))


def test_dropout_only_in_training():
    model = _model("gpt2-tiny", dropout=0.5)
    ids_BT = torch.randint(0, 256, (2, 8))
    torch.testing.assert_close(model(ids_BT), model(ids_BT), rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(ids_BT), model(ids_BT))


# --------------------------------------------------------------------------- counts


def test_gpt2_124m_parameter_count():
    # GPT-2 small with tied embeddings and 1024 learned positions.
    assert count_parameters(ModelConfig(preset="gpt2-124m")) == 124_439_808
    non_embedding = count_parameters(ModelConfig(preset="gpt2-124m"), include_embeddings=False)
    assert non_embedding == 124_439_808 - (50257 + 1024) * 768


def test_parameter_counts_match_transformers_on_meta_device():
    transformers = pytest.importorskip("transformers")
    from lmforge.interop.hf import hf_config

    for preset, cls in (("gpt2-124m", transformers.GPT2LMHeadModel), ("gpt2-350m", transformers.GPT2LMHeadModel),
                        ("llama-1b", transformers.LlamaForCausalLM), ("llama-135m", transformers.LlamaForCausalLM),
                        ("mistral-7b", transformers.MistralForCausalLM),
                        ("falcon-7b", transformers.FalconForCausalLM)):
        cfg = ModelConfig(preset=preset)
        with torch.device("meta"):
            hf_model = cls(hf_config(cfg))
        assert count_parameters(cfg) == hf_model.num_parameters(), preset
    # The published sizes: Mistral 7B (Jiang et al. 2023) and Falcon-7B.
    assert count_parameters(ModelConfig(preset="mistral-7b")) == 7_241_732_096
    assert count_parameters(ModelConfig(preset="falcon-7b")) == 6_921_720_704


def test_count_parameters_of_a_model_equals_its_config():
    model = build_model(ModelConfig(preset="llama-tiny"))
    assert count_parameters(model) == count_parameters(model.config) == sum(p.numel() for p in model.parameters())


def test_flops_per_token_by_hand():
    # llama-tiny: D=64, L=2, H=4, G=2, K=16, F=int(8*64/3)=170 -> 192, V=256, untied.
    per_layer = 64 + 64 * (4 + 2 * 2) * 16 + 64 * 64 + 64 + 64 * 2 * 192 + 192 * 64
    assert per_layer == 49_280
    matmul_params = 2 * per_layer + 64 + 256 * 64  # final norm, untied output head
    assert flops_per_token(ModelConfig(preset="llama-tiny"), seq_len=64) == 6 * matmul_params + 12 * 2 * 4 * 16 * 64
    assert flops_per_token(ModelConfig(preset="llama-tiny"), seq_len=64) == 788_352
    # gpt2-tiny: biases, tied head counted as a matmul, position table excluded.
    per_layer = 2 * 64 + (64 * 192 + 192) + (64 * 64 + 64) + 2 * 64 + (64 * 256 + 256) + (256 * 64 + 64)
    matmul_params = 2 * per_layer + 2 * 64 + 256 * 64
    assert flops_per_token(ModelConfig(preset="gpt2-tiny"), seq_len=32) == 6 * matmul_params + 12 * 2 * 4 * 16 * 32


def test_describe_presets_lists_every_preset():
    table = describe_presets()
    for name in PRESETS:
        assert name in table
    assert "124.4M" in table


# --------------------------------------------------------------------------- resolution


def test_preset_fills_fields_and_derives_widths():
    cfg = resolve_model_config(ModelConfig(preset="gpt2-124m"))
    assert (cfg.family, cfg.dim, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads) == ("gpt2", 768, 12, 12, 12)
    assert (cfg.hidden_dim, cfg.vocab_size, cfg.max_seq_len) == (3072, 50257, 1024)
    assert cfg.bias and cfg.tie_embeddings
    # SwiGLU: int(8*256/3) = 682 rounded up to a multiple of 64.
    assert resolve_model_config(ModelConfig(preset="llama-quickstart", vocab_size=4096)).hidden_dim == 704
    assert resolve_model_config(ModelConfig(vocab_size=10, dim=96, num_heads=4, multiple_of=32)).hidden_dim == 256
    mistral = resolve_model_config(ModelConfig(preset="mistral-quickstart", vocab_size=4096))
    assert (mistral.hidden_dim, mistral.num_kv_heads, mistral.sliding_window) == (704, 4, 128)
    falcon = resolve_model_config(ModelConfig(preset="falcon-quickstart", vocab_size=4096))
    assert (falcon.hidden_dim, falcon.num_kv_heads, falcon.bias, falcon.tie_embeddings) == (1024, 1, False, True)


def test_explicit_values_win_over_the_preset():
    cfg = resolve_model_config(ModelConfig(preset="gpt2-124m", dim=512, num_heads=8, vocab_size=1000, dropout=0.1))
    assert (cfg.dim, cfg.num_heads, cfg.vocab_size, cfg.dropout) == (512, 8, 1000, 0.1)
    assert (cfg.num_layers, cfg.hidden_dim, cfg.max_seq_len) == (12, 2048, 1024)
    # A value equal to the dataclass default is indistinguishable from "not set"...
    assert resolve_model_config(ModelConfig(preset="gpt2-124m", max_seq_len=256)).max_seq_len == 1024
    # ...unless the caller names the fields it set.
    cfg = resolve_model_config(ModelConfig(preset="gpt2-124m", max_seq_len=256), explicit_fields={"max_seq_len"})
    assert (cfg.max_seq_len, cfg.dim) == (256, 768)


def test_resolution_is_idempotent_and_build_model_keeps_it():
    cfg = resolve_model_config(ModelConfig(preset="llama-quickstart", vocab_size=300, num_layers=2))
    assert resolve_model_config(cfg) == cfg
    tiny = ModelConfig(preset="llama-tiny")
    assert build_model(tiny).config == resolve_model_config(tiny)


@pytest.mark.parametrize("cfg,message", [
    (ModelConfig(preset="gpt5"), "unknown model preset 'gpt5': choose one of .*gpt2-tiny, gpt2-quickstart"),
    (ModelConfig(preset="llama-quickstart"), "vocab_size is 0: it must come from the tokenizer"),
    (ModelConfig(vocab_size=10, dim=100, num_heads=3), r"dim \(100\) must be divisible by model.num_heads \(3\)"),
    (ModelConfig(vocab_size=10, num_heads=4, num_kv_heads=3),
     r"num_heads \(4\) must be divisible by model.num_kv_heads"),
    (ModelConfig(vocab_size=10, dim=12, num_heads=4), "even head width"),
    (ModelConfig(vocab_size=10, dropout=1.0), "dropout"),
    (ModelConfig(vocab_size=10, family="mamba"), "family 'mamba' is unknown"),
    (ModelConfig(vocab_size=10, family="mistral", sliding_window=-1), "sliding_window must be 0"),
])
def test_resolution_errors(cfg, message):
    with pytest.raises(ConfigError, match=message):
        resolve_model_config(cfg)
