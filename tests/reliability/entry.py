"""``python -m tests.reliability.entry ARGS`` = ``lico-bench ARGS`` with the reliability
suite's test registrations (tiny models, ``degenerate`` explainer, ``nanshapes``) and its
count of alpha resamples (tests/resamples.py): the process the fault tests kill
or interrupt."""
import sys

from lico_bench.cli import main
from tests.reliability.plugins import registered
from tests.resamples import fewer_alpha_resamples

if __name__ == "__main__":
    with registered(), fewer_alpha_resamples():
        code = main(sys.argv[1:])
    sys.exit(code)
