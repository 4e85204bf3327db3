"""The strategy protocol (fastconv._strategies.Strategy) and the registry."""
import inspect

from fastconv import _strategies


def test_every_registered_strategy_follows_the_protocol():
    for s in _strategies.all_strategies():
        assert isinstance(s, _strategies.Strategy), s.name
        # (isinstance checks the names only: the signatures too)
        for meth in ("supports", "workspace", "estimate", "run"):
            want = list(inspect.signature(getattr(_strategies.Strategy, meth)).parameters)[1:]
            got = list(inspect.signature(getattr(s, meth)).parameters)
            assert got[:len(want)] == want, (s.name, meth, got)


def test_an_object_without_run_is_not_a_strategy():
    class Half:
        name = "half"

        def supports(self, spec, op):
            return None

        def workspace(self, spec, op):
            return 0

        def estimate(self, spec, op, n_threads=1):
            return 1.0

    assert not isinstance(Half(), _strategies.Strategy)
