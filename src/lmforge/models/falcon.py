"""Falcon (Almazrouei et al. 2023; the falcon-7b layout): RoPE, multi-query attention, parallel
attention and MLP branches over one shared LayerNorm, exact-GELU MLP.

The LayerNorms keep their bias while the linear layers have none (`bias` False in the
falcon-* presets); multi-query attention (Shazeer 2019) is `num_kv_heads: 1` in the config.
"""

from lmforge.models.blocks import BlockSpec

BLOCKS = BlockSpec(norm="layernorm", mlp="gelu", positions="rope", residual="parallel", norm_bias=True)
