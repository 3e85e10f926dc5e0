"""How the HF parity tests compare logits: a tolerance stated in units of the dtype's rounding.

Two implementations of the same network, fed the same weights and inputs, differ only by the
order in which they round. In float32 each logit then carries an error of a few units in the
last place (ulps) of the logits' largest magnitude; how many depends on the network's
conditioning. Measured against each model's own float64 forward, the fixtures of these tests
(2-4 layers, width 32-64, random weights) give 2-44 ulps of the largest logit, for lmforge and
for transformers alike (`python tests/parity.py` prints the table). A wrong weight mapping, a
missing mask or a misplaced scale moves logits by 1e-3 of their scale or more, i.e. by more
than 10^4 ulps. So the float32 bound is

    max |ours - theirs| <= FLOAT32_ULPS · eps(float32) · max |theirs|      (FLOAT32_ULPS = 64)

and where transformers computes in float64 (`float64_hf` below), the float64 bound is the same
count of float64 ulps: ~1e-14 of the logits' scale, which only an identical computation meets.

transformers' RMSNorm classes (`LlamaRMSNorm`, `MistralRMSNorm`, `T5LayerNorm`) compute the
mean square in float32 whatever the input dtype, by design (half-precision stability). In a
float64 model that float32 step is the only difference from lmforge (1e-7 relative per norm,
amplified to 4e-5 on the T5 v1.1 fixture's logits). `float64_hf` swaps their forward for the
same formula in the input's dtype for the duration of a float64 comparison.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator
from unittest import mock

import torch

FLOAT32_ULPS = 64
FLOAT64_ULPS = 64

# transformers modules whose norms upcast to float32 (module path, class name)
FLOAT32_NORMS = (
    ("transformers.models.llama.modeling_llama", "LlamaRMSNorm"),
    ("transformers.models.mistral.modeling_mistral", "MistralRMSNorm"),
    ("transformers.models.t5.modeling_t5", "T5LayerNorm"),
)


def ulps_apart(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| in units of eps(dtype) · max |theirs|."""
    scale = theirs.abs().max().item()
    return (ours - theirs).abs().max().item() / (torch.finfo(theirs.dtype).eps * scale)


def assert_logits_match(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal up to the dtype's rounding at the logits' scale (see the module docstring)."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (ours.dtype, theirs.dtype, ours.shape,
                                                                       theirs.shape)
    budget = FLOAT64_ULPS if theirs.dtype == torch.float64 else FLOAT32_ULPS
    apart = ulps_apart(ours, theirs)
    assert apart <= budget, f"logits {apart:.1f} ulps of their scale apart (budget {budget}, {theirs.dtype})"


def _norm_in_input_dtype(self, hidden_states: torch.Tensor) -> torch.Tensor:
    # RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight, all in x's dtype
    mean_square = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(mean_square + self.variance_epsilon))


@contextmanager
def float64_hf(dtype: torch.dtype = torch.float64) -> Iterator[None]:
    """For a float64 comparison: within the block, transformers' float32-upcasting RMSNorms
    compute in their input's dtype, so a float64 HF model computes in float64 throughout.
    For any other dtype nothing changes (float32 comparisons run transformers untouched)."""
    import importlib

    with ExitStack() as stack:
        for module_name, class_name in FLOAT32_NORMS if dtype == torch.float64 else ():
            cls = getattr(importlib.import_module(module_name), class_name)
            stack.enter_context(mock.patch.object(cls, "forward", _norm_in_input_dtype))
        yield


if __name__ == "__main__":  # the measurement the module docstring quotes
    import dataclasses

    import test_bert
    import test_hf_parity
    import test_t5
    from lmforge.interop.hf import to_hf_model

    def rows():
        for name, cfg in test_hf_parity.CONFIGS.items():
            model = test_hf_parity._random_model(cfg)
            ids_BT = test_hf_parity._ids(model.config)
            yield name, model, (ids_BT,), {"input_ids": ids_BT}
        for name, cfg in (("t5-v1.0", test_t5.V1_0), ("t5-v1.1", test_t5.V1_1)):
            ids_BT, mask_BT, dec_BU = test_t5._batch()
            yield (name, test_t5._randomise(test_t5.T5Model(cfg)), (ids_BT, dec_BU, mask_BT),
                   {"input_ids": ids_BT, "attention_mask": mask_BT, "decoder_input_ids": dec_BU})
        ids_BT, mask_BT, types_BT = test_bert._batch()
        model = test_bert._randomise(test_bert.build_model(dataclasses.replace(test_bert.TINY)))
        yield "bert-mlm", model, (ids_BT, mask_BT, types_BT), {"input_ids": ids_BT, "attention_mask": mask_BT,
                                                              "token_type_ids": types_BT}

    print(f"{'fixture':22s} {'ours-hf fp32':>12s} {'ours-fp64':>10s} {'hf-fp64':>10s} {'ours-hf fp64':>13s}  (ulps)")
    with torch.no_grad():
        for name, model, args, kwargs in rows():
            hf_model = to_hf_model(model)
            ours32, theirs32 = model(*args), hf_model(**kwargs).logits
            with float64_hf():
                ours64, theirs64 = model.double()(*args), hf_model.double()(**kwargs).logits
            print(f"{name:22s} {ulps_apart(ours32, theirs32):12.1f} {ulps_apart(ours32.double(), ours64) / 2**29:10.1f}"
                  f" {ulps_apart(theirs32.double(), ours64) / 2**29:10.1f} {ulps_apart(ours64, theirs64):13.1f}")
