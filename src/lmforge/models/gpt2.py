"""GPT-2 (Radford et al. 2019): learned absolute positions, pre-norm LayerNorm, tanh-GELU MLP, MHA.

Biases and tied input/output embeddings come from the config (the gpt2-* presets set both).
"""

from lmforge.models.blocks import BlockSpec

BLOCKS = BlockSpec(norm="layernorm", mlp="gelu_tanh", positions="learned")
