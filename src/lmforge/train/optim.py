"""Optimisers: parameter groups for weight decay, SGD/Adam/AdamW, and LAMB.

Weight decay goes only on the weight matrices that do the model's linear maps. It is
left off:
- 1-D parameters (norm gains, biases): decaying a RMSNorm/LayerNorm gain towards 0 shrinks
  the activations it exists to rescale, and biases hold little capacity (GPT-3 and
  nanoGPT exclude both; Loshchilov & Hutter 2019 decouple decay from the gradient step).
- embeddings: most rows receive a gradient only when their token occurs, so decay would
  pull rare tokens' vectors towards 0 between occurrences. A tied output head is the same
  ``Parameter`` object as the input embedding, so it is found by identity and also left
  undecayed (and, being one object, is optimised once).

Every group also carries ``lr_scale``: the loop sets ``group["lr"] = lr * group["lr_scale"]``
(times the rollback factor). `lr_scales` fills it in for layer-wise learning-rate decay and
per-module rates; parameters with different scales go into different groups.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Optional

import torch
from torch import Tensor, nn

from lmforge.config import OptimConfig
from lmforge.errors import ConfigError

DECAY, EMBEDDING, VECTOR = "decay", "embedding", "vector"


def group_parameters(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Split trainable parameters into ``decay`` (matrices), ``embedding`` and ``vector`` (ndim < 2).

    Embeddings are the weights of ``nn.Embedding``/``nn.EmbeddingBag`` modules, recognised by
    object identity so a weight shared with an output head counts once, as an embedding.
    ``named_parameters`` already yields a shared parameter once (under its first name).
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {DECAY: [], EMBEDDING: [], VECTOR: []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in embedding_ids:
            groups[EMBEDDING].append((name, param))
        elif param.ndim >= 2:
            groups[DECAY].append((name, param))
        else:
            groups[VECTOR].append((name, param))
    return groups


def block_depths(model: nn.Module) -> tuple[dict[str, int], int]:
    """Each trainable parameter's depth, and the number of blocks L, for layer-wise decay.

    Blocks are the entries of the model's ``nn.ModuleList``s, stacked in registration order
    (T5: the encoder's, then the decoder's): block k (0-based over all of them) has depth k + 1.
    A parameter outside the blocks takes the depth of the blocks registered before it: 0 for
    the embeddings (and their norm or position bias) before the first block, L + 1 for the
    final norm and output head after the last. A tied head is the embedding (depth 0).
    """
    block_of: dict[str, int] = {}  # "layers.3." -> block number
    for list_name, blocks in model.named_modules():
        inside_a_block = any(f"{list_name}.".startswith(prefix) for prefix in block_of)
        if isinstance(blocks, nn.ModuleList) and not inside_a_block:
            for index in range(len(blocks)):
                block_of[f"{list_name}.{index}." if list_name else f"{index}."] = len(block_of)
    num_blocks = len(block_of)
    depths, seen = {}, 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        block = next((k for prefix, k in block_of.items() if name.startswith(prefix)), None)
        if block is not None:
            seen = block + 1
            depths[name] = block + 1
        else:
            depths[name] = num_blocks + 1 if seen == num_blocks else seen
    return depths, num_blocks


def lr_scales(model: nn.Module, layer_decay: float = 1.0,
              module_scales: Optional[dict[str, float]] = None) -> dict[str, float]:
    """The learning-rate multiplier of every trainable parameter, by name.

    Layer-wise decay (Howard & Ruder 2018, ULMFiT's discriminative fine-tuning; Clark et al.
    2020, ELECTRA; Bao et al. 2022, BEiT): a parameter at depth d of L blocks (`block_depths`)
    trains at ``layer_decay ** (L + 1 - d)``: the output end at 1, the top block at
    ``layer_decay``, the embeddings at ``layer_decay ** (L + 1)``, so the general features
    low in the network move least. Then the first pattern of ``module_scales`` (fnmatch on the
    parameter name) that matches multiplies it.
    """
    depths, num_blocks = block_depths(model)
    scales = {}
    for name, depth in depths.items():
        scale = layer_decay ** (num_blocks + 1 - depth) if layer_decay != 1.0 else 1.0
        pattern = next((p for p in (module_scales or {}) if fnmatch.fnmatchcase(name, p)), None)
        scales[name] = scale * float(module_scales[pattern]) if pattern is not None else scale
    return scales


def _check(cfg: OptimConfig) -> None:
    """Reject values that would silently train nothing or diverge (the loader checks only types)."""
    if cfg.lr <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {cfg.lr}")
    if cfg.weight_decay < 0:
        raise ConfigError(f"optim.weight_decay must be >= 0, got {cfg.weight_decay}")
    for key in ("beta1", "beta2"):
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise ConfigError(f"optim.{key} must be in [0, 1), got {getattr(cfg, key)}")
    if cfg.eps <= 0:
        raise ConfigError(f"optim.eps must be > 0, got {cfg.eps}")
    if cfg.momentum < 0:
        raise ConfigError(f"optim.momentum must be >= 0, got {cfg.momentum}")
    for key in ("min_lr_ratio", "decay_fraction"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise ConfigError(f"optim.{key} must be in [0, 1], got {getattr(cfg, key)}")
    if cfg.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps must be >= 0, got {cfg.warmup_steps}")


def build_optimizer(model: nn.Module, cfg: OptimConfig, device_type: str = "cpu") -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.name`` over ``group_parameters(model)``.

    - ``sgd``: momentum ``cfg.momentum``, no Nesterov; decay is torch's L2 term added to the
      gradient (for SGD that equals decoupled decay up to a factor of lr).
    - ``adam``: classic Adam (Kingma & Ba 2015) with ``weight_decay`` as an L2 term added to
      the gradient of the decay group, so it is rescaled by the adaptive denominator.
    - ``adamw``: decoupled decay (Loshchilov & Hutter 2019, arXiv 1711.05101); the fused
      kernel on CUDA (one launch for all parameters), the foreach path elsewhere.
    - ``lamb``: ``Lamb`` below; the layer-wise trust ratio is applied to matrices and
      embeddings, not to 1-D parameters (as the reference TF implementation does for the
      parameters it excludes from decay).

    Groups carry a ``name`` key (decay / embedding / vector) so a saved optimiser state reads
    clearly, and an ``lr_scale`` (`lr_scales`: layer-wise decay, per-module rates); each kind
    is split by scale, in order of first appearance; empty groups are omitted. The training
    loop overwrites ``lr`` every step.
    """
    _check(cfg)
    groups = parameter_groups(model, cfg)
    if not groups:
        raise ConfigError("the model has no trainable parameters: nothing to optimise")
    betas = (cfg.beta1, cfg.beta2)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=False)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=betas, eps=cfg.eps)
    if cfg.name == "adamw":
        fast = {"fused": True} if device_type == "cuda" else {"foreach": True}
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, **fast)
    if cfg.name == "lamb":
        for group in groups:
            group["trust_ratio"] = group["name"] != VECTOR
        return Lamb(groups, lr=cfg.lr, betas=betas, eps=cfg.eps)
    raise ConfigError(f"optim.name '{cfg.name}' is unknown: use sgd, adam, adamw or lamb")


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """The optimiser's groups: one per (kind, learning-rate scale), with its weight decay."""
    scales = lr_scales(model, cfg.layer_lr_decay, cfg.module_lr_scales)
    groups: list[dict[str, Any]] = []
    for kind, members in group_parameters(model).items():
        by_scale: dict[float, list[nn.Parameter]] = {}
        for name, param in members:
            by_scale.setdefault(scales[name], []).append(param)
        for scale, params in by_scale.items():
            groups.append({"name": kind, "params": params, "lr_scale": scale,
                           "weight_decay": cfg.weight_decay if kind == DECAY else 0.0})
    return groups


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning", arXiv 1904.00962, Alg. 2).

    Per parameter tensor w with gradient g, at step t:
        m = beta1 m + (1 - beta1) g            v = beta2 v + (1 - beta2) g^2
        r = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
        u = r + weight_decay * w               (decoupled decay, inside the trust ratio)
        w = w - lr * (||w|| / ||u||) * u
    The trust ratio ||w|| / ||u|| (phi = identity) makes each layer's step a fixed fraction
    lr of its own norm; it is 1 when either norm is 0 (a freshly zeroed layer, or no update)
    and for groups with ``trust_ratio=False``. Updates are vectorised over a group's tensors
    with torch's foreach kernels; ``state_dict``/``load_state_dict`` come from the base class.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, trust_ratio: bool = True) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "trust_ratio": trust_ratio}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if params:
                _lamb_update(params, grads, exp_avgs, exp_avg_sqs, steps, lr=group["lr"],
                             betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"],
                             trust_ratio=group["trust_ratio"])
        return loss


def _lamb_update(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                 exp_avg_sqs: list[Tensor], steps: list[int], *, lr: float, betas: tuple[float, float],
                 eps: float, weight_decay: float, trust_ratio: bool) -> None:
    beta1, beta2 = betas
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)  # m += (1 - beta1) (g - m)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
    # bias corrections differ per tensor only if some tensor skipped steps (grad None)
    updates = torch._foreach_div(exp_avgs, [1.0 - beta1 ** t for t in steps])
    denoms = torch._foreach_div(exp_avg_sqs, [1.0 - beta2 ** t for t in steps])
    torch._foreach_sqrt_(denoms)
    torch._foreach_add_(denoms, eps)
    torch._foreach_div_(updates, denoms)
    if weight_decay != 0.0:
        torch._foreach_add_(updates, params, alpha=weight_decay)
    if trust_ratio:
        weight_norms = torch.stack([n.float() for n in torch._foreach_norm(params)])
        update_norms = torch.stack([n.float() for n in torch._foreach_norm(updates)])
        ratios = torch.where((weight_norms > 0) & (update_norms > 0),
                             weight_norms / update_norms, torch.ones_like(weight_norms))
        # one scale per tensor, kept on device (no host sync)
        torch._foreach_mul_(updates, list(ratios.unbind(0)))
    torch._foreach_add_(params, updates, alpha=-lr)
