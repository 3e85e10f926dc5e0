"""Llama (Touvron et al. 2023; Llama 3, Dubey et al. 2024): RoPE, RMSNorm, SwiGLU MLP, GQA, no biases.

Grouped-query attention comes from `num_kv_heads` in the config; `bias` stays False in the
llama-* presets.
"""

from lmforge.models.blocks import BlockSpec
from lmforge.models.families._decoder import CAUSAL_HEADS, check_one_stack, swiglu_hidden_dim, transformer_builder
from lmforge.models.registry import Family, register_family

BLOCKS = BlockSpec(norm="rmsnorm", mlp="swiglu", positions="rope")

_LLAMA = {"family": "llama", "bias": False, "norm_eps": 1e-5}
PRESETS = {
    "llama-tiny": {**_LLAMA, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2,
                   "num_heads": 4, "num_kv_heads": 2, "tie_embeddings": False},
    # About 3M non-embedding parameters, ~25 MFLOP/token at seq 256: ~5 minutes on 2 CPU cores.
    "llama-quickstart": {**_LLAMA, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8,
                         "num_kv_heads": 4, "multiple_of": 64, "tie_embeddings": True},
    # The shape of SmolLM-135M (a Llama-architecture model, 134.5M parameters, tied).
    "llama-135m": {**_LLAMA, "vocab_size": 49152, "max_seq_len": 2048, "dim": 576, "num_layers": 30,
                   "num_heads": 9, "num_kv_heads": 3, "hidden_dim": 1536, "tie_embeddings": True},
    # Approximately Llama 3.2 1B (1.24B parameters). Its 128k context relies on "llama3" RoPE
    # frequency scaling, which is not implemented here, so the context is the 8k of pretraining.
    "llama-1b": {**_LLAMA, "vocab_size": 128256, "max_seq_len": 8192, "dim": 2048, "num_layers": 16,
                 "num_heads": 32, "num_kv_heads": 8, "hidden_dim": 8192, "rope_theta": 500000.0,
                 "tie_embeddings": True},
}

FAMILY = register_family(Family(
    name="llama", summary="RoPE, RMSNorm, SwiGLU, grouped-query attention", blocks=BLOCKS, heads=CAUSAL_HEADS,
    build=transformer_builder(BLOCKS), default_task="causal_lm", presets=PRESETS, generation="causal",
    validate=check_one_stack, default_hidden_dim=swiglu_hidden_dim))
