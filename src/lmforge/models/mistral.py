"""Mistral 7B (Jiang et al. 2023): the Llama blocks with grouped-query and sliding-window attention.

The window comes from `sliding_window` in the config (4096 in mistral-7b): each query attends
to itself and the W-1 keys before it, so information travels W positions per layer and
L·W positions through the stack. Grouped-query attention comes from `num_kv_heads`.
"""

from lmforge.models.blocks import BlockSpec

BLOCKS = BlockSpec(norm="rmsnorm", mlp="swiglu", positions="rope")
