"""Native log lines on stderr: MediaPipe's absl warnings and TensorFlow Lite's notices.

mediapipe 0.10.18 logs through absl before anything calls absl::InitializeLog(), so its
warnings ("W0000 00:00:... inference_feedback_manager.cc:114] Feedback manager requires a
model with a single signature ...") go straight to file descriptor 2. No environment variable
reaches them (GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL were tried), and to a new user they
make a working agent look broken. They come from a pose graph's first frames.

`native_stderr_to_log()` points fd 2 at a temporary file for the length of a block, then puts
it back and passes on what was written: native log lines to a logger at DEBUG (so
`--log-level debug` still shows them), anything else (another thread's log line, a traceback)
back to stderr unchanged. It owns nothing else and never runs outside such a block.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["NATIVE_LINE", "native_stderr_to_log"]

# absl/glog ("W0000 00:00:1796178108.020511    7776 file.cc:114] ..."), TensorFlow Lite's
# "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and absl's pre-init notice.
NATIVE_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s:]+:\d+\] "
    r"|INFO: Created TensorFlow Lite "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)"
)
STDERR_FD = 2

# fd 2 belongs to the whole process: two threads swapping it at once could leave it pointing
# at a closed file, so one block at a time.
_swap = threading.Lock()


@contextmanager
def native_stderr_to_log(logger: logging.Logger) -> Iterator[None]:
    """Within the block, native log lines on fd 2 go to `logger` at DEBUG instead."""
    with _swap:
        try:
            saved = os.dup(STDERR_FD)
        except OSError:  # no stderr at all: nothing to keep quiet
            yield
            return
        _flush()
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), STDERR_FD)
            try:
                yield
            finally:
                _flush()
                os.dup2(saved, STDERR_FD)
                os.close(saved)
                sink.seek(0)
                written = sink.read()
    _pass_on(written, logger)


def _flush() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


def _pass_on(written: bytes, logger: logging.Logger) -> None:
    other: list[str] = []
    for line in written.decode("utf-8", errors="replace").splitlines():
        if NATIVE_LINE.match(line):
            logger.debug("native: %s", line)
        else:
            other.append(line)
    if other:
        os.write(STDERR_FD, ("\n".join(other) + "\n").encode("utf-8", errors="replace"))
