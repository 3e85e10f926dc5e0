"""Mistral 7B (Jiang et al. 2023): the Llama blocks with grouped-query and sliding-window attention.

The window comes from `sliding_window` in the config (4096 in mistral-7b): each query attends
to itself and the W-1 keys before it, so information travels W positions per layer and
L·W positions through the stack. Grouped-query attention comes from `num_kv_heads`.
"""

from lmforge.models.blocks import BlockSpec
from lmforge.models.families._decoder import CAUSAL_HEADS, check_one_stack, swiglu_hidden_dim, transformer_builder
from lmforge.models.registry import Family, register_family

BLOCKS = BlockSpec(norm="rmsnorm", mlp="swiglu", positions="rope")

_MISTRAL = {"family": "mistral", "bias": False, "norm_eps": 1e-5, "tie_embeddings": False}
PRESETS = {
    "mistral-tiny": {**_MISTRAL, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2,
                     "num_heads": 4, "num_kv_heads": 2, "sliding_window": 8},
    # The window is half the context so that training exercises it.
    "mistral-quickstart": {**_MISTRAL, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8,
                           "num_kv_heads": 4, "multiple_of": 64, "sliding_window": 128, "tie_embeddings": True},
    # Mistral 7B v0.1 (7,241,732,096 parameters): 4096-token window, 32k positions.
    "mistral-7b": {**_MISTRAL, "vocab_size": 32000, "max_seq_len": 32768, "dim": 4096, "num_layers": 32,
                   "num_heads": 32, "num_kv_heads": 8, "hidden_dim": 14336, "sliding_window": 4096},
}

FAMILY = register_family(Family(
    name="mistral", summary="llama + sliding-window attention", blocks=BLOCKS, heads=CAUSAL_HEADS,
    build=transformer_builder(BLOCKS), default_task="causal_lm", presets=PRESETS, generation="causal",
    validate=check_one_stack, default_hidden_dim=swiglu_hidden_dim))
