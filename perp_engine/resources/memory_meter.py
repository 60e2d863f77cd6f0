"""PeakMemory: the peak memory of a stretch of code in this process, in MiB, on the run's device.

- CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak: tensors only, not the allocator's cache.
- CPU on Linux: the kernel's resident-set high-water mark (VmHWM in /proc/self/status), reset at :meth:`start`
  by writing 5 to /proc/self/clear_refs, so the peak is exact and excludes whatever came before.
  (``getrusage``'s ``ru_maxrss`` is not: it also keeps the high-water marks of threads that have exited.)
- Elsewhere (macOS, or a container that forbids clear_refs): a thread sampling the RSS every 2 ms with psutil;
  spikes shorter than that can be missed.

``method`` says which one is in use. The CPU figures are the whole process (Python, libraries, everything alive),
which is what a user's machine must have free; the CUDA figures are what tensors need on the GPU.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading

import torch

MIB = 2**20  # bytes in a MiB, the unit the meter reports in (and the memory model's constants are written in)
GIB = 2**30  # bytes in a GiB, the unit estimates and fit checks are shown in
_HWM_RESET = "/proc/self/clear_refs"


class PeakMemory:
    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self.start_mb = 0.0  # memory in use when the peak was last started
        self._sampled = 0.0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        if self.device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated, reset at start"
        elif _can_reset_hwm():
            self.method = "RSS high-water mark VmHWM, reset at start through /proc/self/clear_refs"
        else:
            self.method = "RSS sampled every 2 ms by a thread (psutil)"

    def start(self) -> "PeakMemory":
        """Start a new peak (the current usage is its floor), after :func:`release_freed_memory`: what an earlier
        stage freed does not count against this one."""
        release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / MIB
        elif self.method.startswith("RSS high-water"):
            with open(_HWM_RESET, "w") as f:
                f.write("5")
            self.start_mb = _status_mb("VmRSS")
        else:
            self._halt()
            self.start_mb = self._sampled = rss_mb()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, name="perp-peak-memory", daemon=True)
            self._thread.start()
        return self

    def peak(self) -> float:
        """Peak since :meth:`start`, in MiB; the meter keeps running."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / MIB
        if self.method.startswith("RSS high-water"):
            return _status_mb("VmHWM")
        return max(self._sampled, rss_mb())

    def stop(self) -> float:
        """The peak, and the sampling thread (if any) stopped."""
        peak = self.peak()
        self._halt()
        return peak

    def _halt(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = self._thread = None

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._sampled = max(self._sampled, rss_mb())


def release_freed_memory() -> None:
    """Collect unreachable objects and hand the C heap's free pages back to the system (glibc's ``malloc_trim``;
    a no-op elsewhere). Without it a process keeps the pages of tensors freed by an earlier stage (optimizer
    state, activations, load-time copies) resident, and the next stage's resident memory starts that much higher."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def _can_reset_hwm() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open(_HWM_RESET, "w") as f:
            f.write("5")
        return _status_mb("VmHWM") > 0
    except OSError:
        return False


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"{key} not in /proc/self/status")


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MIB
