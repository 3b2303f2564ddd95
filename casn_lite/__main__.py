"""``python -m casn_lite``: the command line (``casn_lite.tooling.cli``)."""

import sys

from .tooling.cli import main

if __name__ == "__main__":
    sys.exit(main())
