"""PeakMemory: the peak of a stretch of code, on the CPU (the process's high-water mark) and on CUDA."""

from __future__ import annotations

import pytest
import torch

from perp_engine.resources.memory_meter import MIB, PeakMemory


def test_cpu_peak_memory_tracks_a_large_allocation():
    meter = PeakMemory("cpu").start()
    before = meter.peak()
    block = torch.ones(256 * MIB // 4)  # 256 MiB of float32, written so it is resident
    during = meter.peak()
    del block
    assert during - before > 200
    assert meter.stop() > during - 1  # the kernel refreshes its high-water mark lazily, to within pages
    if meter.method.startswith("RSS high-water"):  # Linux: the peak restarts from the current usage
        assert meter.start().peak() < during - 200


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_memory_counts_allocated_tensors():
    meter = PeakMemory("cuda").start()
    block = torch.ones(2**26, device="cuda")  # 256 MiB
    assert meter.peak() >= 256
    del block
    assert meter.start().peak() < 256
