"""Falcon (Almazrouei et al. 2023; the falcon-7b layout): RoPE, multi-query attention, parallel
attention and MLP branches over one shared LayerNorm, exact-GELU MLP.

The LayerNorms keep their bias while the linear layers have none (`bias` False in the
falcon-* presets); multi-query attention (Shazeer 2019) is `num_kv_heads: 1` in the config.
"""

from lmforge.models.blocks import BlockSpec
from lmforge.models.families._decoder import CAUSAL_HEADS, check_one_stack, transformer_builder
from lmforge.models.registry import Family, register_family

BLOCKS = BlockSpec(norm="layernorm", mlp="gelu", positions="rope", residual="parallel", norm_bias=True)

_FALCON = {"family": "falcon", "bias": False, "norm_eps": 1e-5, "num_kv_heads": 1, "tie_embeddings": True}
PRESETS = {
    "falcon-tiny": {**_FALCON, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2, "num_heads": 4},
    "falcon-quickstart": {**_FALCON, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8},
    # Falcon-7B (6,921,720,704 parameters): 71 query heads of width 64 and one key/value head.
    "falcon-7b": {**_FALCON, "vocab_size": 65024, "max_seq_len": 2048, "dim": 4544, "num_layers": 32,
                  "num_heads": 71},
}

FAMILY = register_family(Family(
    name="falcon", summary="RoPE, multi-query attention, parallel attention/MLP, LayerNorm, GELU", blocks=BLOCKS,
    heads=CAUSAL_HEADS, build=transformer_builder(BLOCKS), default_task="causal_lm", presets=PRESETS,
    generation="causal", validate=check_one_stack))
