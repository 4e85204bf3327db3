"""Keep BLAS threads and OpenMP threads from oversubscribing the cores."""
from __future__ import annotations

import contextlib

_controller = None


def blas_limit(n):
    """Context manager limiting every loaded BLAS library to ``n`` threads.

    Used around kernels that call BLAS from inside an OpenMP loop, so the two
    thread pools never run at full width at once. A no-op context when
    threadpoolctl is unavailable.
    """
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a declared dependency
            return contextlib.nullcontext()
        # created lazily: by then the compiled modules have loaded scipy's BLAS
        _controller = ThreadpoolController()
    return _controller.limit(limits=n, user_api="blas")
