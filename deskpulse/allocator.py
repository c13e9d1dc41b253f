"""glibc's allocator settings for the agent process (the one place that calls mallopt).

Camera frames and MediaPipe's tensors are buffers of hundreds of kilobytes, allocated and
freed every frame by several threads. glibc's default raises its mmap threshold after the
first such buffer is freed, from then on serving them from the threads' heaps, where freed
space is kept rather than returned; and each thread may get its own heap (an arena). Fixing
the threshold (buffers of 128 KiB and more are mapped and unmapped) and capping the arenas
at 2 keeps the resident set 20 MB lower on the demo (bench/memory.py) for about 1 ms of
page faults per frame. Nothing changes where glibc isn't the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
ARENA_MAX = 2


def tune() -> bool:
    """Apply the settings; False (and nothing changed) on a C library without mallopt."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_ARENA_MAX, ARENA_MAX))
    if not ok:
        log.debug("mallopt refused the allocator settings")
    return ok
