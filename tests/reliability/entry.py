"""``python -m tests.reliability.entry ARGS`` = ``lico-bench ARGS`` with the reliability
suite's test registrations (tiny models, ``degenerate`` explainer, ``nanshapes``): the
process the fault tests kill or interrupt."""
import sys

from lico_bench.cli import main
from tests.reliability.plugins import registered

if __name__ == "__main__":
    with registered():
        code = main(sys.argv[1:])
    sys.exit(code)
