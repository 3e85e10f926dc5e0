"""Parameter counts, FLOPs per token (per example for encoder-decoders) and the preset table
`lmforge models` prints."""

from __future__ import annotations

import dataclasses
from typing import Union

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.presets import resolve_model_config
from lmforge.models import registry
from lmforge.models.registry import all_presets, get_family


def _meta_model(cfg: ModelConfig) -> nn.Module:
    """The model `build_model` makes (the family's pretraining head), with shapes only (no
    memory), so counting llama-1b costs nothing."""
    cfg = resolve_model_config(cfg)
    family = get_family(cfg.family)
    with torch.device("meta"):
        return family.build(cfg, family.heads[0])


def count_parameters(model_or_cfg: Union[nn.Module, ModelConfig], include_embeddings: bool = True) -> int:
    """Number of distinct parameters (a tied output head is counted once).

    `include_embeddings=False` leaves out the token and position embedding tables (and so a
    tied output head, which is the token table). T5's relative position bias tables (one
    small table per stack) are lookups too and are left out with them.
    """
    model = _meta_model(model_or_cfg) if isinstance(model_or_cfg, ModelConfig) else model_or_cfg
    params = {id(p): p.numel() for p in model.parameters()}
    if not include_embeddings:
        for module in model.modules():
            if isinstance(module, nn.Embedding):
                params.pop(id(module.weight), None)
    return sum(params.values())


def approx_parameters(cfg: ModelConfig) -> int:
    """The parameters of ``cfg``'s weight matrices and embedding tables, by formula.

    Norm gains and biases are left out, so this is a lower bound on ``count_parameters``, a
    fraction of a percent below it for real shapes (the presets are checked in
    tests/test_config_ranges.py). Nothing is built, so any shape, even one no
    machine could hold, is counted at once: this is what the config loader uses to refuse a
    model that cannot fit in memory. ``cfg.vocab_size`` 0 (from the tokenizer) counts as 1.
    The family's own formula where it has one (``Family.approx_parameters``), else that of one
    stack of blocks (``registry.stack_parameters``).
    """
    cfg = resolve_model_config(dataclasses.replace(cfg, vocab_size=max(cfg.vocab_size, 1)))
    return get_family(cfg.family).estimate_parameters(cfg)


def rope_table_elements(cfg: ModelConfig) -> int:
    """Elements of the RoPE cos/sin tables a rope family precomputes for every position (fp32,
    buffers rather than parameters; 0 for other families), by formula like ``approx_parameters``."""
    cfg = resolve_model_config(dataclasses.replace(cfg, vocab_size=max(cfg.vocab_size, 1)))
    return get_family(cfg.family).rope_table_elements(cfg)


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token, 6N + 12·L·H·Q·T (PaLM, Chowdhery et al. 2022, appendix B).

    6N is the forward (2N) and backward (4N) matmul work of the weights; 12·L·H·Q·T is that of
    the attention scores and the weighted sum (L layers, H query heads, head width Q, sequence
    length T; the causal half is not discounted, as in PaLM). N counts the weights that take
    part in a matmul for every token: all parameters except the token and position embedding
    tables, which are lookups, plus the output projection even when it is tied to the token
    embedding (its D·V matmul is real work, often the biggest one in a small model; torchtitan
    and nanoGPT count it too).

    Family bert: N is the encoder plus the MLM head (its dense layer and the tied decoder, run
    at every position as we do). The attention term is the same 12·L·H·Q·T: a bidirectional
    encoder computes every one of the T×T scores, so there it is exact, not a causal overcount.

    Family t5 (encoder-decoder; its ``Family.attention_layers``): FLOPs per *target* token when inputs and targets are both
    `seq_len` long, so each target token brings one input token through the encoder: 6N
    over all matmul weights of both stacks and the head, and an attention term with the
    decoder layers counted twice (causal self-attention and cross-attention over the T inputs).
    That is `encoder_decoder_flops(cfg, seq_len, seq_len) / seq_len`. Span corruption has
    targets far shorter than its inputs (115 for 512), so its training loop counts with
    `encoder_decoder_flops` at the task's real lengths instead (`SpanCorruptionTask.flops_per_token`).
    """
    cfg = resolve_model_config(cfg)
    num_matmul_params = count_parameters(cfg, include_embeddings=False)
    if cfg.tie_embeddings:
        num_matmul_params += cfg.dim * cfg.vocab_size
    head_dim = cfg.head_dim or cfg.dim // cfg.num_heads
    family = get_family(cfg.family)
    attention_layers = family.attention_layers(cfg) if family.attention_layers is not None else cfg.num_layers
    return 6.0 * num_matmul_params + 12.0 * attention_layers * cfg.num_heads * head_dim * seq_len


def encoder_decoder_flops(cfg: ModelConfig, inputs_len: int, targets_len: int) -> float:
    """Training FLOPs of one (input, target) example of a t5 model: what runs per input token
    times the input length, plus what runs per target token times the target length.

    Same accounting as `flops_per_token` (PaLM, appendix B: 6 FLOPs per weight per token for
    forward + backward, 12·H·Q per attended position, norm gains counted with the weights,
    lookup tables left out), split by where each weight is applied:

    - per input token: the encoder layers and final norm, the decoder's cross-attention key
      and value projections (they project the encoder output, once per input position, not
      per target position), and encoder self-attention over the T_in inputs;
    - per target token: the rest of the decoder (self-attention q/k/v/o, cross-attention
      q/o, MLPs, norms, final norm), the head (D·V, tied or not), causal self-attention over
      the T_out targets (not halved, as in PaLM) and cross-attention over the T_in inputs.

    With T_in = T_out = T this is exactly T · `flops_per_token(cfg, T)`.
    """
    cfg = resolve_model_config(cfg)
    if get_family(cfg.family).generation != "seq2seq":
        raise ConfigError(f"encoder_decoder_flops is for encoder-decoders (family t5), not {cfg.family!r}: "
                          "use flops_per_token")
    model = _meta_model(cfg)

    def size(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    encoder = size(model.encoder_layers) + size(model.encoder_norm)
    cross_kv = sum(size(layer.cross_attn.k_proj) + size(layer.cross_attn.v_proj) for layer in model.decoder_layers)
    decoder = size(model.decoder_layers) + size(model.decoder_norm) - cross_kv + cfg.dim * cfg.vocab_size
    width = cfg.num_heads * (cfg.head_dim or cfg.dim // cfg.num_heads)  # H·Q
    encoder_layers, decoder_layers = cfg.num_layers, cfg.num_decoder_layers or cfg.num_layers
    per_input_token = 6.0 * (encoder + cross_kv) + 12.0 * encoder_layers * width * inputs_len
    per_target_token = 6.0 * decoder + 12.0 * decoder_layers * width * (targets_len + inputs_len)
    return inputs_len * per_input_token + targets_len * per_target_token


def describe_presets(vocab_size_if_unset: int = 4096) -> str:
    """A table of every preset: shape, parameters, FLOPs per token at its max_seq_len; then every
    registered family with its summary and pretraining task."""
    header = ("preset", "family", "layers", "dim", "heads", "kv", "hidden", "vocab", "seq",
              "params", "non-emb", "GFLOP/token")
    rows = [header]
    for name, values in all_presets().items():
        vocab_size = values.get("vocab_size", vocab_size_if_unset)
        cfg = resolve_model_config(ModelConfig(preset=name, vocab_size=vocab_size))
        rows.append((name, cfg.family, str(cfg.num_layers), str(cfg.dim), str(cfg.num_heads),
                     str(cfg.num_kv_heads), str(cfg.hidden_dim),
                     str(vocab_size) + ("" if "vocab_size" in values else "*"), str(cfg.max_seq_len),
                     _human(count_parameters(cfg)), _human(count_parameters(cfg, include_embeddings=False)),
                     f"{flops_per_token(cfg, cfg.max_seq_len) / 1e9:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.append(f"* vocabulary comes from the tokenizer ({vocab_size_if_unset} assumed here)")
    lines.append("")
    lines.append("families (model.family):")
    families = registry.families()
    width = max(len(name) for name in families)
    lines += [f"  {name.ljust(width)}  {family.summary} (task {family.default_task})"
              for name, family in families.items()]
    return "\n".join(lines)


def _human(count: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.1f}{suffix}"
    return str(count)

