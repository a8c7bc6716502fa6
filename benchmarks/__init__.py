"""fastloop's benchmarks: `python -m benchmarks` runs the side-by-side suite (run.py).

The scripts here also run on their own (`python benchmarks/core_vs_baseline.py`) and import
their helpers as top-level modules (`_harness`, `baseline.build`), so this folder is put on
sys.path when it is imported as a package.
"""

import sys as _sys
from pathlib import Path as _Path

_HERE = str(_Path(__file__).resolve().parent)
if _HERE not in _sys.path:
    _sys.path.insert(0, _HERE)
