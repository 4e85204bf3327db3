"""pytest-benchmark configuration for the fastconv benchmark suites.

    pytest benchmarks                                # full layer sizes, timed
    pytest benchmarks --quick                        # scaled-down sizes
    pytest benchmarks --benchmark-disable --quick    # CI smoke run: every case once

``--quick`` selects the "quick" sizes of :mod:`layers`; without it the "full"
sizes run. The session fixture ``matmul_ceiling`` measures numpy's float32
matmul GFLOP/s once; every case quotes its own GFLOP/s against it in
``extra_info``.
"""
import pytest

from fastconv.bench.timing import matmul_ceiling as _matmul_ceiling


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", default=False,
                     help="fastconv benchmarks: small layer sizes (CI smoke run)")


@pytest.fixture(scope="session")
def bench_size(request):
    """"quick" with --quick, else "full"."""
    return "quick" if request.config.getoption("--quick") else "full"


@pytest.fixture(autouse=True)
def _fresh_plans():
    """Every case plans afresh: a memoized plan keeps what the modules' constants
    said when it was made, and cases replace some (im2col's _L2_FRACTION, FFT's
    block plan) with monkeypatch."""
    from fastconv import _dispatch

    _dispatch.clear_memo()


@pytest.fixture(scope="session")
def matmul_ceiling(bench_size):
    """``{"n", "gflops", "best_s"}`` of a numpy float32 n x n matmul on this machine."""
    return _matmul_ceiling(512 if bench_size == "quick" else 1024)


try:
    import pytest_benchmark  # noqa: F401
except ImportError:  # run the cases once anyway, so the suite still smoke-tests
    class _Once:
        def __init__(self):
            self.extra_info = {}

        def __call__(self, fn, *args, **kwargs):
            return fn(*args, **kwargs)

    @pytest.fixture
    def benchmark():
        return _Once()
