"""Autoregressive sampling with a KV cache (decoder-only models, and encoder-decoders with
`generate_seq2seq`), and the pure logit transforms it uses.

Shape legend: B batch (rows), T prompt length, S tokens seen so far, V vocabulary.

The transforms run in the order HF `generate` uses: repetition penalty, temperature, top-k,
top-p. Each takes logits and returns new logits (the input is never modified).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from typing import Iterator, Optional

import torch

from lmforge.errors import LmforgeError
from lmforge.models.decoding import fast_decoding


def apply_repetition_penalty(logits_BV: torch.Tensor, token_ids_BS: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019, eq. 4, as HF implements it): the logit of every token
    already seen is divided by `penalty` if positive and multiplied by it if negative, so a
    penalty > 1 always makes a seen token less likely. A token seen twice is penalised once."""
    if penalty == 1.0:
        return logits_BV
    seen_BS = logits_BV.gather(1, token_ids_BS)
    seen_BS = torch.where(seen_BS > 0, seen_BS / penalty, seen_BS * penalty)
    # An extreme penalty (1e-40, 1e40) would overflow to +-inf: keep the logits finite.
    finfo = torch.finfo(seen_BS.dtype)
    return logits_BV.scatter(1, token_ids_BS, seen_BS.clamp(finfo.min, finfo.max))


def top_k_filter(logits_BV: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (Fan et al. 2018), -inf elsewhere; ties with the
    k-th value are kept. k <= 0 or k >= V is a no-op."""
    if k <= 0 or k >= logits_BV.shape[-1]:
        return logits_BV
    kth_B1 = logits_BV.topk(k, dim=-1).values[:, -1:]
    return logits_BV.masked_fill(logits_BV < kth_B1, float("-inf"))


def top_p_filter(logits_BV: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al. 2020): keep the smallest set of most likely tokens whose
    probability sums to at least p, -inf elsewhere. The most likely token is always kept.
    p >= 1 is a no-op."""
    if p >= 1.0:
        return logits_BV
    sorted_BV, order_BV = logits_BV.sort(dim=-1, descending=True)
    probs_BV = sorted_BV.softmax(dim=-1)
    mass_before_BV = probs_BV.cumsum(dim=-1) - probs_BV
    drop_sorted_BV = mass_before_BV >= p
    drop_sorted_BV[:, 0] = False
    drop_BV = torch.zeros_like(drop_sorted_BV).scatter(1, order_BV, drop_sorted_BV)
    return logits_BV.masked_fill(drop_BV, float("-inf"))


def sample_next_token(logits_BV: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token per row: argmax when temperature == 0, else a draw from softmax(logits / T)
    after the top-k and top-p filters. Returns int64 (B,)."""
    if temperature == 0:
        return logits_BV.argmax(dim=-1)
    scaled_BV = logits_BV / temperature
    if not bool(torch.isfinite(scaled_BV).all()):
        # A tiny temperature overflows logits / T to inf (and softmax to nan). Shifted by each
        # row's maximum the scaled logits are <= 0: the likeliest tokens keep 0 (0 / T; nan when
        # T underflows to 0 in the logits' dtype), the rest tend to -inf (probability 0): the
        # limit the temperature approaches.
        shifted_BV = logits_BV - logits_BV.max(dim=-1, keepdim=True).values
        scaled_BV = (shifted_BV / temperature).nan_to_num(nan=0.0, posinf=math.inf, neginf=-math.inf)
    logits_BV = top_p_filter(top_k_filter(scaled_BV, top_k), top_p)
    return torch.multinomial(logits_BV.softmax(dim=-1), 1, generator=generator).squeeze(1)


def _hold_finished(next_B: torch.Tensor, finished_B: torch.Tensor, eos_id: Optional[int]) -> torch.Tensor:
    """Rows that already produced `eos_id` keep yielding it; marks new finishers in place."""
    if eos_id is None:
        return next_B
    next_B = next_B.masked_fill(finished_B, eos_id)
    finished_B |= next_B == eos_id
    return next_B


def _fast_path(fast: Optional[bool], device: torch.device) -> bool:
    """`fast` None means: on CPU (where the fused frozen weights were measured to pay;
    elsewhere their extra copy of the weights would cost accelerator memory unmeasured)."""
    return device.type == "cpu" if fast is None else fast


@torch.inference_mode()
def generate(model: torch.nn.Module, prompt_ids_BT: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, eos_id: Optional[int] = None,
             generator: Optional[torch.Generator] = None, fast: Optional[bool] = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, (B,) int64, one step at a time.

    The prompt (all rows the same length, no padding) is run in one forward that fills a KV
    cache; each later step runs only the newest token. Generation stops after
    `max_new_tokens`, when every row has produced `eos_id` (a finished row keeps yielding
    `eos_id`), or when prompt + new tokens reach the model's `max_seq_len` (the context is
    not slid: nothing is generated past it). The model runs in eval mode (no dropout) and
    gets its previous mode back at the end. `generator` seeds sampling (same device as model).

    `fast` (default: on for CPU) swaps the model's plain `nn.Linear`s and head for fused,
    frozen copies of their weights while the generator lives (`fast_decoding` in
    `lmforge.models.decoding`; wrapped linears, e.g. LoRA, stay as they are): the same function, rounded
    differently (logits agree to rounding, not bit for bit), at the cost of one extra copy of
    those weights; parameters changed during the generation are not seen. `fast=False` runs
    the modules as they are. On CPU a decoding step's attention is two batched products
    either way (`matmul_attention`).
    """
    batch_size, prompt_len = prompt_ids_BT.shape
    max_seq_len = model.config.max_seq_len
    if prompt_len == 0 or prompt_len > max_seq_len:
        raise LmforgeError(f"the prompt has {prompt_len} tokens but the model takes 1 to {max_seq_len}: "
                           f"shorten the prompt")
    num_new = min(max_new_tokens, max_seq_len - prompt_len)
    if num_new <= 0:
        return
    fast = _fast_path(fast, prompt_ids_BT.device)
    was_training = model.training
    model.eval()
    with ExitStack() as stack:
        stack.callback(model.train, was_training)
        if fast:
            stack.enter_context(fast_decoding(model, batch_size))
        kv_cache = model.new_kv_cache(batch_size, prompt_len + num_new - 1)
        seen_BS = torch.empty(batch_size, prompt_len + num_new, dtype=torch.long, device=prompt_ids_BT.device)
        seen_BS[:, :prompt_len] = prompt_ids_BT
        finished_B = torch.zeros(batch_size, dtype=torch.bool, device=prompt_ids_BT.device)
        input_ids_BT = prompt_ids_BT
        for step in range(num_new):
            # Only the last position's logits are needed: skip the (T, V) head of the prefill.
            hidden_BD = model.hidden_states(input_ids_BT, kv_cache)[:, -1]
            logits_BV = model.output(hidden_BD).float()
            logits_BV = apply_repetition_penalty(logits_BV, seen_BS[:, :prompt_len + step], repetition_penalty)
            next_B = _hold_finished(sample_next_token(logits_BV, temperature, top_k, top_p, generator),
                                    finished_B, eos_id)
            yield next_B
            if eos_id is not None and bool(finished_B.all()):
                return
            seen_BS[:, prompt_len + step] = next_B
            input_ids_BT = next_B.unsqueeze(1)


@torch.inference_mode()
def generate_seq2seq(model: torch.nn.Module, input_ids_BT: torch.Tensor, max_new_tokens: int,
                     temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, eos_id: Optional[int] = None,
                     decoder_start_id: int = 0, generator: Optional[torch.Generator] = None,
                     attention_mask_BT: Optional[torch.Tensor] = None,
                     fast: Optional[bool] = None) -> Iterator[torch.Tensor]:
    """Yield the next target token of every row, (B,) int64, one step at a time, from an
    encoder-decoder (`T5Model`: `encode`, `new_cache`, `decode`).

    The encoder runs once over `input_ids_BT` (rows may be padded: `attention_mask_BT`, 1 =
    real token); the cache then holds every decoder layer's cross-attention keys/values of
    its output, computed once, and the decoder self-attention keys/values, so each step runs
    the decoder on the newest token only. Decoding starts from `decoder_start_id` (T5: the
    pad id, 0). Stops after `max_new_tokens` or when every row has produced `eos_id` (a
    finished row keeps yielding `eos_id`). Sampling as in `generate` (`sample_next_token`:
    temperature 0 is greedy); the model runs in eval mode and gets its previous mode back.
    `fast` as in `generate` (`fast_decoding`).
    """
    if input_ids_BT.shape[1] == 0:
        raise LmforgeError("the input has no tokens")
    if max_new_tokens <= 0:
        return
    batch_size = input_ids_BT.shape[0]
    # The decoder's self-attention cache is allocated for max_new_tokens positions up front.
    from lmforge.config import check_fits_in_memory

    cfg = model.config
    cache_elements = (2 * (cfg.num_decoder_layers or cfg.num_layers) * batch_size * cfg.num_heads
                      * (cfg.head_dim or cfg.dim // cfg.num_heads) * max_new_tokens)
    check_fits_in_memory("max_new_tokens", f"the decoder key/value caches for {max_new_tokens:,} new tokens",
                         4 * cache_elements, "lower max_new_tokens")
    was_training = model.training
    model.eval()
    with ExitStack() as stack:
        stack.callback(model.train, was_training)
        fast = _fast_path(fast, input_ids_BT.device)
        if fast:
            stack.enter_context(fast_decoding(model, batch_size))
        encoder_out_BTD = model.encode(input_ids_BT, attention_mask_BT)
        cache = model.new_cache(encoder_out_BTD, max_new_tokens, attention_mask_BT)
        finished_B = torch.zeros(batch_size, dtype=torch.bool, device=input_ids_BT.device)
        next_B1 = torch.full((batch_size, 1), decoder_start_id, dtype=torch.long, device=input_ids_BT.device)
        for _ in range(max_new_tokens):
            logits_BV = model.output(model.decoder_hidden_states(next_B1, cache=cache)[:, -1]).float()
            next_B = _hold_finished(sample_next_token(logits_BV, temperature, top_k, top_p, generator),
                                    finished_B, eos_id)
            yield next_B
            if eos_id is not None and bool(finished_B.all()):
                return
            next_B1 = next_B.unsqueeze(1)
