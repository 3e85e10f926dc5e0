"""Llama (Touvron et al. 2023; Llama 3, Dubey et al. 2024): RoPE, RMSNorm, SwiGLU MLP, GQA, no biases.

Grouped-query attention comes from `num_kv_heads` in the config; `bias` stays False in the
llama-* presets.
"""

from lmforge.models.blocks import BlockSpec

BLOCKS = BlockSpec(norm="rmsnorm", mlp="swiglu", positions="rope")
