"""Training windows over a token stream, in a shuffled order fully determined by ``(seed, position)``.

The stream of ``num_tokens`` tokens is cut into ``num_windows = (num_tokens - 1) // seq_len``
windows of ``seq_len + 1`` tokens starting at multiples of ``seq_len``: consecutive windows
share one token, because inputs are ``w[:-1]`` and targets ``w[1:]``, so every token is a
target exactly once per epoch. Windows cross document boundaries (documents are separated by
eos), as in GPT-2/nanoGPT pretraining.

Global window ``i`` is ``permutation(seed, epoch)[i % num_windows]`` with
``epoch = i // num_windows``: each epoch visits every window once, in a fresh order. The
sampler's whole state is ``(seed, position)``, so a resumed run draws exactly the batches
the uninterrupted run would have drawn (docs/architecture.md, 'Sampler state and exact
resume').

Legend: B = batch (windows), T = seq_len, W = seq_len + 1 (window length).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from lmforge.errors import DataError


class WindowSampler:
    """Draw ``global_batch_size`` window offsets per step; ``state_dict()`` is ``{seed, position}``."""

    def __init__(self, num_tokens: int, seq_len: int, global_batch_size: int, seed: int, position: int = 0):
        self.num_windows = (num_tokens - 1) // seq_len if num_tokens > 0 else 0
        if self.num_windows <= 0:
            raise DataError(f"split has {num_tokens} tokens, fewer than seq_len+1 = {seq_len + 1}: "
                            f"lower --train.seq_len or add data")
        self.num_tokens = num_tokens
        self.seq_len = seq_len
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.position = position
        self._epoch: Optional[int] = None
        self._order: Optional[np.ndarray] = None

    @property
    def epoch(self) -> int:
        """The epoch the next window belongs to."""
        return self.position // self.num_windows

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._order = np.random.default_rng((self.seed, epoch)).permutation(self.num_windows)
            self._epoch = epoch
        assert self._order is not None
        return self._order

    def next_offsets(self) -> np.ndarray:
        """Token offsets (int64, ``(global_batch_size,)``) of the next windows; advances the position."""
        window_ids = np.empty(self.global_batch_size, dtype=np.int64)
        filled = 0
        while filled < self.global_batch_size:
            epoch, start = divmod(self.position + filled, self.num_windows)
            take = min(self.global_batch_size - filled, self.num_windows - start)
            window_ids[filled: filled + take] = self._permutation(epoch)[start: start + take]
            filled += take
        self.position += self.global_batch_size
        return window_ids * self.seq_len

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"])
        self.position = int(state["position"])
        self._epoch, self._order = None, None


def get_batch(tokens: np.ndarray, offsets: np.ndarray, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather windows at ``offsets`` into ``(inputs_BT, targets_BT)`` int64 tensors.

    One fancy-indexing gather reads only the needed pages of a memmap. Inputs and targets are
    separate contiguous tensors, so masking targets in place cannot touch the inputs.
    """
    index_BW = np.asarray(offsets, dtype=np.int64)[:, None] + np.arange(seq_len + 1, dtype=np.int64)
    windows_BW = np.asarray(tokens[index_BW], dtype=np.int64)
    inputs_BT = torch.from_numpy(np.ascontiguousarray(windows_BW[:, :-1]))
    targets_BT = torch.from_numpy(np.ascontiguousarray(windows_BW[:, 1:]))
    return inputs_BT, targets_BT
