"""casn-lite: an educational reproduction of CASN for person re-identification."""

import os
from pathlib import Path

__version__ = "0.1.0"

# Where notebooks put generated data: $CASN_LITE_DATA, else data/ beside the package.
DATA_DIR = Path(os.environ.get("CASN_LITE_DATA", Path(__file__).resolve().parents[1] / "data"))
