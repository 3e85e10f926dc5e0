"""WindowSampler and get_batch: determinism, exact resume, one visit per window per epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmforge.data import WindowSampler, get_batch
from lmforge.errors import DataError


def draw(sampler: WindowSampler, num_batches: int) -> list[np.ndarray]:
    return [sampler.next_offsets() for _ in range(num_batches)]


def test_window_count_and_offsets():
    sampler = WindowSampler(num_tokens=101, seq_len=10, global_batch_size=4, seed=0)
    assert sampler.num_windows == 10  # last window [90, 100] uses token 100, the final one
    assert WindowSampler(num_tokens=100, seq_len=10, global_batch_size=4, seed=0).num_windows == 9
    offsets = np.concatenate(draw(sampler, 5))[:10]
    assert offsets.dtype == np.int64
    assert sorted(offsets.tolist()) == list(range(0, 100, 10))


def test_too_few_tokens():
    with pytest.raises(DataError, match=r"split has 10 tokens, fewer than seq_len\+1 = 11: lower --train.seq_len"):
        WindowSampler(num_tokens=10, seq_len=10, global_batch_size=2, seed=0)


def test_deterministic_and_seed_dependent():
    a = draw(WindowSampler(1000, 7, 5, seed=1), 10)
    b = draw(WindowSampler(1000, 7, 5, seed=1), 10)
    c = draw(WindowSampler(1000, 7, 5, seed=2), 10)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("batch_size", [3, 8, 13])
def test_exact_resume(batch_size):
    full = WindowSampler(num_tokens=500, seq_len=8, global_batch_size=batch_size, seed=7)
    expected = draw(full, 20)  # crosses several epochs of 62 windows
    first = WindowSampler(num_tokens=500, seq_len=8, global_batch_size=batch_size, seed=7)
    head = draw(first, 6)
    state = first.state_dict()
    assert state == {"seed": 7, "position": 6 * batch_size}
    resumed = WindowSampler(num_tokens=500, seq_len=8, global_batch_size=batch_size, seed=999)
    draw(resumed, 3)  # stale cached epoch must not leak into the restored order
    resumed.load_state_dict(state)
    tail = draw(resumed, 14)
    assert all(np.array_equal(x, y) for x, y in zip(head + tail, expected))
    via_ctor = WindowSampler(500, 8, batch_size, **state)
    assert np.array_equal(via_ctor.next_offsets(), expected[6])


def test_each_window_once_per_epoch_and_epochs_differ():
    num_windows = 12
    sampler = WindowSampler(num_tokens=num_windows * 4 + 1, seq_len=4, global_batch_size=5, seed=3)
    stream = np.concatenate(draw(sampler, 12))  # 60 windows = 5 epochs, batches straddle epochs
    epochs = stream.reshape(5, num_windows)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(0, num_windows * 4, 4))
    assert len({tuple(e) for e in epochs.tolist()}) == 5
    assert sampler.epoch == 5


def test_get_batch_shifts_targets_and_copies():
    tokens = np.arange(50, dtype=np.uint16)
    inputs_BT, targets_BT = get_batch(tokens, np.array([0, 20, 5]), seq_len=4)
    assert inputs_BT.dtype == targets_BT.dtype == torch.int64
    assert inputs_BT.tolist() == [[0, 1, 2, 3], [20, 21, 22, 23], [5, 6, 7, 8]]
    assert targets_BT.tolist() == [[1, 2, 3, 4], [21, 22, 23, 24], [6, 7, 8, 9]]
    targets_BT[:, 0] = -100  # masking targets in place must not change the inputs
    assert inputs_BT[:, 1].tolist() == [1, 21, 6]


def test_get_batch_from_memmap_sampler_windows(tmp_path):
    path = tmp_path / "t.bin"
    values = np.random.default_rng(0).integers(0, 60000, size=257).astype(np.uint16)
    values.tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    sampler = WindowSampler(len(tokens), seq_len=16, global_batch_size=4, seed=0)
    offsets = sampler.next_offsets()
    inputs_BT, targets_BT = get_batch(tokens, offsets, 16)
    for row, offset in enumerate(offsets):
        assert inputs_BT[row].tolist() == values[offset: offset + 16].tolist()
        assert targets_BT[row].tolist() == values[offset + 1: offset + 17].tolist()
