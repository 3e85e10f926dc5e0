"""Text in, text out: streaming generation from a checkpoint with stop strings.

``lmforge.generate`` works on token ids; this module adds the tokenizer: it encodes the
prompt, decodes incrementally (holding back a trailing partial UTF-8 character and any text
that could still become a stop string) and stops at eos, a stop string or the token budget.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator, Optional, Sequence

import torch

from lmforge.config import GenerateConfig
from lmforge.errors import LmforgeError
from lmforge.generate import generate, generate_seq2seq


class TextSampler:
    """A loaded checkpoint ready to continue prompts."""

    def __init__(self, checkpoint: str, device: str = "auto") -> None:
        from lmforge.models.decoding import packed_linear_mode
        from lmforge.models.registry import get_family
        from lmforge.train.checkpoint import load_checkpoint
        from lmforge.train.parallel import World, resolve_device

        packed_linear_mode()  # a bad LMFORGE_PACKED_LINEAR fails here, before any output
        self.device = resolve_device(device, World())
        self.model, self.tokenizer, self.checkpoint_dir = load_checkpoint(checkpoint, self.device)
        # "causal": a decoder continues the prompt; "seq2seq": an encoder reads it, a decoder answers
        self.generation = get_family(self.model.config.family).generation
        if self.generation is None:
            raise LmforgeError(f"{self.checkpoint_dir} is a {self.model.config.family} model, which does not generate "
                               "text: for an encoder trained by masked LM use lmforge.fill_mask.fill_mask to "
                               "predict <mask> tokens")

    def prompt_ids(self, prompt: str) -> list[int]:
        # Training documents each follow an eos token, so eos is the "start of document" context.
        return [self.tokenizer.require_id("eos", "sampling")] + self.tokenizer.encode(prompt)

    def stream(self, prompt: str, max_new_tokens: int = 128, temperature: float = 0.8, top_k: int = 0,
               top_p: float = 1.0, repetition_penalty: float = 1.0, stop: Sequence[str] = (),
               seed: int = 0) -> Iterator[str]:
        """Yield pieces of generated text as they become final."""
        if self.generation == "seq2seq":
            yield from self._stream_seq2seq(prompt, max_new_tokens, temperature, top_k, top_p, stop, seed)
            return
        ids = self.prompt_ids(prompt)
        room = self.model.config.max_seq_len - len(ids)
        if room <= 0:
            keep = self.model.config.max_seq_len - 1
            print(f"note: the prompt has {len(ids)} tokens, more than the model's context; "
                  f"generating from its last {keep}", file=sys.stderr)
            ids, room = ids[-keep:], 1
        generator = torch.Generator(device=self.device).manual_seed(seed)
        prompt_BT = torch.tensor([ids], dtype=torch.long, device=self.device)
        tokens = (int(token_B[0]) for token_B in generate(
            self.model, prompt_BT, min(max_new_tokens, room), temperature=temperature, top_k=top_k,
            top_p=top_p, repetition_penalty=repetition_penalty, eos_id=self.tokenizer.eos_id,
            generator=generator))
        yield from stream_text(tokens, self.tokenizer.decode, self.tokenizer.eos_id, stop)


    def _stream_seq2seq(self, prompt: str, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
                        stop: Sequence[str], seed: int) -> Iterator[str]:
        """Encoder-decoder: the prompt (ending with eos, as span-corruption inputs do) is encoded
        once; the decoder starts from pad (T5's decoder start token) and runs with its caches."""
        ids = self.tokenizer.encode(prompt) + [self.tokenizer.require_id("eos", "sampling")]
        generator = torch.Generator(device=self.device).manual_seed(seed)
        tokens = (int(token_B[0]) for token_B in generate_seq2seq(
            self.model, torch.tensor([ids], dtype=torch.long, device=self.device), max_new_tokens,
            temperature=temperature, top_k=top_k, top_p=top_p, eos_id=self.tokenizer.eos_id,
            decoder_start_id=self.tokenizer.pad_id, generator=generator))
        yield from stream_text(tokens, self._decode_with_sentinels, self.tokenizer.eos_id, stop)

    def _decode_with_sentinels(self, ids: list[int]) -> str:
        """Decode, writing T5 sentinels (ids above the tokenizer's, counted down from the top of
        the model's vocabulary) as ``<extra_id_N>``."""
        top = self.model.config.vocab_size - 1
        pieces, run = [], []
        for token in ids:
            if token < self.tokenizer.vocab_size:
                run.append(token)
                continue
            pieces += [self.tokenizer.decode(run), f"<extra_id_{top - token}>"]
            run = []
        return "".join(pieces + [self.tokenizer.decode(run)])


def stream_text(tokens: Iterable[int], decode: Callable[[list[int]], str], eos_id: Optional[int],
                stop: Sequence[str] = ()) -> Iterator[str]:
    """Turn a stream of token ids into pieces of final text.

    Decoding the whole continuation each time (not token by token) keeps multi-token characters
    and merges right; a trailing U+FFFD (half of a UTF-8 character) and the last
    ``len(longest stop string) - 1`` characters are held back until they are settled, so the
    text printed never contains a stop string nor has to be taken back.
    """
    new_ids: list[int] = []
    emitted = 0
    hold = max((len(s) for s in stop), default=1) - 1
    text = ""
    for token in tokens:
        if token == eos_id:
            break
        new_ids.append(token)
        text = decode(new_ids)
        cut = _first_stop(text, stop)
        if cut is not None:
            if cut > emitted:
                yield text[emitted:cut]
            return
        safe = len(text.rstrip("\ufffd")) - hold
        if safe > emitted:
            yield text[emitted:safe]
            emitted = safe
    if len(text) > emitted:
        yield text[emitted:]


def _first_stop(text: str, stop: Sequence[str]) -> Optional[int]:
    positions = [text.find(s) for s in stop if s and s in text]
    return min(positions) if positions else None


def sample_text(cfg: GenerateConfig, sample_index: int = 0, sampler: Optional[TextSampler] = None) -> Iterator[str]:
    """Stream one sample for ``lmforge generate`` (sample i uses seed ``cfg.seed + i``)."""
    sampler = sampler or _cached_sampler(cfg.checkpoint, cfg.device)
    return sampler.stream(cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                          cfg.repetition_penalty, cfg.stop, cfg.seed + sample_index)


_SAMPLERS: dict[tuple[str, str], TextSampler] = {}


def _cached_sampler(checkpoint: str, device: str) -> TextSampler:
    key = (checkpoint, device)
    if key not in _SAMPLERS:
        _SAMPLERS[key] = TextSampler(checkpoint, device)
    return _SAMPLERS[key]
