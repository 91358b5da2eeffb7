"""``python -m benchmarks`` (repo root) / ``python -m virtserve.benchmarks``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
