"""`python -m fastloop`: the `fastloop` command (see fastloop.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
