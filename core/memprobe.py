"""How much memory there is and how much a load took: RAM via psutil, GPUs via torch.

torch is imported only when a CUDA device node exists (``/dev/nvidiactl``), so machines
without a GPU never pay for the import. Every CUDA path is here:

- budgets:       ``torch.cuda.mem_get_info(i)[0]`` (free bytes on the device);
- measured use:  the drop in free device memory across a load (it sees llama.cpp's own
  CUDA allocations too), with ``torch.cuda.memory_allocated`` reported beside it for
  torch backends.
"""

from __future__ import annotations

import os
from functools import cache


def process_rss() -> int:
    """Resident set size of this process, in bytes."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # /proc fallback: pages * page size
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ram_available() -> int:
    """RAM the system can give without swapping, in bytes."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return 0


@cache
def cuda_available() -> bool:
    """True when a CUDA device exists and torch can use it (torch imported only then)."""
    if not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # no torch, or a CPU-only build
        return False


def _index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def cuda_free(device: str) -> int | None:
    """Free bytes on ``cuda:N``, or None without CUDA."""
    if not cuda_available():
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(_index(device))
    return int(free)


def cuda_allocated(device: str) -> int | None:
    """Bytes torch's caching allocator holds on ``cuda:N`` (torch backends only)."""
    if not cuda_available():
        return None
    import torch

    return int(torch.cuda.memory_allocated(_index(device)))


def device_used(device: str) -> int | None:
    """A reading whose change across a load is that load's memory on ``device``."""
    if device == "cpu":
        return process_rss()
    free = cuda_free(device)
    return None if free is None else -free


def device_available(device: str) -> int | None:
    """Bytes available now on ``device`` (RAM for ``cpu``), None if the device is absent."""
    return ram_available() if device == "cpu" else cuda_free(device)
