"""Fewer bootstrap resamples of Krippendorff's alpha for the suites that run the benchmark
end to end but never read its method report (tests/reliability, tests/bench).

Every ``run`` of two or more methods writes the method report (methods.csv/.md/.tex), whose
alpha CIs draw ``method_stats.ALPHA_RESAMPLES`` = 2000 resamples of one Python call each:
~3 s of the ~5 s CPU of the fault tests' 4-experiment run, paid again by every run and
rerun. Those suites compare rows and summary.* tables, never methods.*; the alpha statistic
and its CI are tested with the library's count in tests/report/test_methods.py."""
import contextlib

#: the count those suites' runs draw (in-process and in their child processes alike)
ALPHA_RESAMPLES = 100


@contextlib.contextmanager
def fewer_alpha_resamples(n: int = ALPHA_RESAMPLES):
    """Within the block, ``method_stats.alpha_bootstrap_ci``'s default ``n_resamples`` is
    ``n`` (its one function object: also as imported by report.methods)."""
    from lico_bench.report.method_stats import alpha_bootstrap_ci as f

    names = f.__code__.co_varnames[: f.__code__.co_argcount]
    i = names.index("n_resamples") - (len(names) - len(f.__defaults__))
    old = f.__defaults__
    f.__defaults__ = old[:i] + (n,) + old[i + 1:]
    try:
        yield
    finally:
        f.__defaults__ = old
