"""4-bit NormalFloat (NF4) weights for QLoRA (Dettmers et al. 2023, arXiv 2305.14314).

NF4 has 16 levels at quantiles of N(0, 1), normalised to [-1, 1], with an exact zero: 8
positive levels at the quantiles of ``linspace(δ, 1/2, 9)`` and 7 negative ones at
``linspace(δ, 1/2, 8)`` (the zero shared), δ = ½(1 − 1/32 + 1 − 1/30) = 0.9677083, each side
divided by its largest value (the paper's construction, section 3 and appendix E; its published
table is these values rounded to float32, which `test_nf4.py` checks). A weight matrix is cut
into blocks of ``block_size`` (64) consecutive values of its flattened rows; each block is
divided by its absolute maximum and each value replaced by the index of the nearest level. Two
4-bit codes are packed per uint8 (the first value in the high nibble).

Double quantisation (the paper's, section 3): the float32 block scales (0.5 bit per weight at
blocks of 64) are themselves quantised to 8 bits, in blocks of 256 scales, after subtracting
their mean (they are all positive), which makes them 8/64 + 32/(64·256) = 0.127 bit per weight.
The paper uses 8-bit floats for the second level; here it is symmetric int8 absmax
(round(c·127/max|c|)), simpler and as compact; `test_nf4.py` measures the extra error it adds.

`NF4Linear` holds the packed codes and scales as buffers (never trained) and computes
``F.linear(x, dequantise(), bias)`` through `_NF4Matmul`, which keeps only the packed codes for
the backward pass and dequantises again there: autograd would otherwise hold every layer's full
precision weight from the forward to the backward pass, and the memory saving would be gone.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError

NF4_OFFSET = 0.5 * ((1 - 1 / 32) + (1 - 1 / 30))  # δ = 0.9677083 (QLoRA appendix E)
DOUBLE_QUANT_BLOCK = 256  # scales per second-level block (QLoRA section 3)


def nf4_levels() -> torch.Tensor:
    """The 16 NF4 levels, ascending, from -1 to 1 with an exact 0 (float32)."""
    positive = torch.special.ndtri(torch.linspace(NF4_OFFSET, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -torch.special.ndtri(torch.linspace(NF4_OFFSET, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([positive / positive.max(), torch.zeros(1, dtype=torch.float64),
                        negative / negative.abs().max()]).sort().values
    return levels.to(torch.float32)


_LEVELS = nf4_levels()
_MIDPOINTS = (_LEVELS[1:] + _LEVELS[:-1]) / 2  # value -> nearest level via bucketize


def _pad_to(flat: torch.Tensor, multiple: int) -> torch.Tensor:
    extra = (-flat.numel()) % multiple
    return F.pad(flat, (0, extra)) if extra else flat


def quantize_nf4(weight: torch.Tensor, block_size: int = 64, double_quant: bool = False) -> dict[str, torch.Tensor]:
    """``weight`` as NF4: ``codes`` (uint8, two per byte), and either ``scales`` (float32, one per
    block) or, with ``double_quant``, ``scale_codes`` (int8), ``scale_scales`` (float32 per 256)
    and ``scale_mean`` (float32 scalar)."""
    if block_size < 2 or block_size % 2:
        raise ConfigError(f"config key 'adapter.options.quant_block_size': expected an even integer >= 2, "
                          f"got {block_size}")
    flat = _pad_to(weight.detach().to(torch.float32).flatten(), block_size)
    blocks_NK = flat.view(-1, block_size)
    absmax_N = blocks_NK.abs().amax(dim=1)
    normalised_NK = blocks_NK / absmax_N.clamp_min(torch.finfo(torch.float32).tiny)[:, None]
    codes = torch.bucketize(normalised_NK.flatten(), _MIDPOINTS.to(flat.device)).to(torch.uint8)
    packed = (codes[0::2] << 4) | codes[1::2]
    out = {"codes": packed}
    if not double_quant:
        out["scales"] = absmax_N
        return out
    mean = absmax_N.mean()
    centred = _pad_to(absmax_N - mean, DOUBLE_QUANT_BLOCK).view(-1, DOUBLE_QUANT_BLOCK)
    second_M = centred.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
    out["scale_codes"] = torch.round(centred / second_M[:, None]).clamp(-127, 127).to(torch.int8).flatten()
    out["scale_scales"] = second_M
    out["scale_mean"] = mean.reshape(())
    return out


def block_scales(quant: dict[str, torch.Tensor], num_blocks: int) -> torch.Tensor:
    """The float32 absmax of each block (decoded from the int8 codes under double quantisation)."""
    if "scales" in quant:
        return quant["scales"]
    codes = quant["scale_codes"].to(torch.float32).view(-1, DOUBLE_QUANT_BLOCK)
    return ((codes * quant["scale_scales"][:, None]).flatten()[:num_blocks] + quant["scale_mean"])


def dequantize_nf4(quant: dict[str, torch.Tensor], shape: torch.Size, block_size: int = 64,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight of ``shape`` that ``quant`` (from `quantize_nf4`) stands for, in ``dtype``."""
    packed = quant["codes"]
    codes = torch.stack([packed >> 4, packed & 15], dim=1).flatten().long()
    numel = math.prod(shape)
    num_blocks = codes.numel() // block_size
    values_NK = _LEVELS.to(packed.device)[codes].view(num_blocks, block_size)
    values_NK = values_NK * block_scales(quant, num_blocks)[:, None]
    return values_NK.flatten()[:numel].view(shape).to(dtype)


class _NF4Matmul(torch.autograd.Function):
    """y = x W^T with W dequantised in the forward pass and again in the backward pass (only the
    packed weight is kept in between). No gradient for W: the base is frozen."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, module: "NF4Linear") -> torch.Tensor:  # type: ignore[override]
        ctx.module = module
        return F.linear(x, module.dequantize(x.dtype))

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        weight = ctx.module.dequantize(grad_y.dtype)
        return grad_y @ weight, None


class NF4Linear(nn.Module):
    """A frozen linear layer whose weight is stored in NF4 (`quantize_nf4`): packed codes and
    block scales are buffers (saved in the state dict, never trained); the bias, if any, stays
    a frozen float parameter. ``forward`` dequantises to the input's dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, block_size: int = 64,
                 double_quant: bool = False, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.block_size, self.double_quant = block_size, double_quant
        numel = in_features * out_features
        num_blocks = -(-numel // block_size)
        self.register_buffer("codes", torch.zeros(num_blocks * block_size // 2, dtype=torch.uint8, device=device))
        if double_quant:
            groups = -(-num_blocks // DOUBLE_QUANT_BLOCK)
            self.register_buffer("scale_codes", torch.zeros(groups * DOUBLE_QUANT_BLOCK, dtype=torch.int8,
                                                            device=device))
            self.register_buffer("scale_scales", torch.zeros(groups, device=device))
            self.register_buffer("scale_mean", torch.zeros((), device=device))
        else:
            self.register_buffer("scales", torch.zeros(num_blocks, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_size: int = 64, double_quant: bool = False) -> "NF4Linear":
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, block_size=block_size,
                     double_quant=double_quant, device=linear.weight.device)
        for name, tensor in quantize_nf4(linear.weight, block_size, double_quant).items():
            getattr(module, name).copy_(tensor)
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        return module

    def quant_state(self) -> dict[str, torch.Tensor]:
        names = ("codes", "scale_codes", "scale_scales", "scale_mean") if self.double_quant else ("codes", "scales")
        return {name: getattr(self, name) for name in names}

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight (out_features x in_features) in ``dtype``."""
        return dequantize_nf4(self.quant_state(), torch.Size((self.out_features, self.in_features)),
                              self.block_size, dtype)

    @property
    def weight_shape(self) -> torch.Size:
        return torch.Size((self.out_features, self.in_features))

    def storage_bytes(self) -> int:
        """Bytes of the quantised weight (codes and scales; the bias not counted)."""
        return sum(t.numel() * t.element_size() for t in self.quant_state().values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        y = _NF4Matmul.apply(x, self)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"block_size={self.block_size}, double_quant={self.double_quant}")


def _inside_blocks(model: nn.Module) -> set[str]:
    """Names of the modules inside a transformer block: any module under a `nn.ModuleList`
    (the decoder's ``layers``, BERT's and T5's stacks)."""
    names: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList):
            names.update(f"{name}.{sub}" if name else sub for sub, _ in module.named_modules() if sub)
    return names


def quantize_base(model: nn.Module, block_size: int = 64, double_quant: bool = False,
                  skip: frozenset[str] = frozenset()) -> list[str]:
    """Replace every plain `nn.Linear` inside the transformer blocks by an `NF4Linear` (not the
    embeddings, not the output head or a classifier outside the blocks, not the names in
    ``skip``); returns the replaced names."""
    from lmforge.models.heads import LMHead

    inside = _inside_blocks(model)
    targets = [(name, module) for name, module in model.named_modules()
               if name in inside and name not in skip and isinstance(module, nn.Linear)
               and not isinstance(module, LMHead)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, NF4Linear.from_linear(module, block_size, double_quant))
    return [name for name, _ in targets]
