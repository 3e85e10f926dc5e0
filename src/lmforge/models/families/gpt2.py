"""GPT-2 (Radford et al. 2019): learned absolute positions, pre-norm LayerNorm, tanh-GELU MLP, MHA.

Biases and tied input/output embeddings come from the config (the gpt2-* presets set both).
"""

from lmforge.models.blocks import BlockSpec
from lmforge.models.families._decoder import CAUSAL_HEADS, check_one_stack, transformer_builder
from lmforge.models.registry import Family, register_family

BLOCKS = BlockSpec(norm="layernorm", mlp="gelu_tanh", positions="learned")

_GPT2 = {"family": "gpt2", "bias": True, "tie_embeddings": True, "norm_eps": 1e-5}
PRESETS = {
    # A forward+backward takes milliseconds (tests).
    "gpt2-tiny": {**_GPT2, "vocab_size": 256, "max_seq_len": 64, "dim": 64, "num_layers": 2, "num_heads": 4},
    # Sized to train in ~5 minutes on 2 CPU cores; vocab_size comes from the tokenizer.
    "gpt2-quickstart": {**_GPT2, "max_seq_len": 256, "dim": 256, "num_layers": 4, "num_heads": 8},
    # GPT-2 small and medium: 124,439,808 and 354,823,168 parameters.
    "gpt2-124m": {**_GPT2, "vocab_size": 50257, "max_seq_len": 1024, "dim": 768, "num_layers": 12, "num_heads": 12},
    "gpt2-350m": {**_GPT2, "vocab_size": 50257, "max_seq_len": 1024, "dim": 1024, "num_layers": 24, "num_heads": 16},
}

FAMILY = register_family(Family(
    name="gpt2", summary="learned positions, LayerNorm, GELU", blocks=BLOCKS, heads=CAUSAL_HEADS,
    build=transformer_builder(BLOCKS), default_task="causal_lm", presets=PRESETS, generation="causal",
    validate=check_one_stack))
