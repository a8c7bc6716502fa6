"""fastloop: an HTTP/1.1 server for Python with a compiled, edge-triggered core."""

__version__ = "0.1.0"  # first: fastloop.serve's --version reads it while this module loads

try:
    from . import _core  # noqa: F401 (imported to check that the extension loads)
except ImportError as exc:  # never fall back to a pure-Python stand-in
    raise ImportError(
        "fastloop's compiled core (fastloop._core) is missing or broken. Install with "
        "`pip install .`, which builds it; inside the source folder, `python -m` finds the "
        "unbuilt sources first: use the installed `fastloop` command, or build in place with "
        "`python setup.py build_ext --inplace`"
    ) from exc

from ._core import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, POLLER, Request, Response
from .app import App
from .server import Server
from .config import Config
from .serve import run

__all__ = ["App", "Server", "Request", "Response", "Config", "run", "DEFAULT_LIMITS",
           "DEFAULT_TIMEOUTS", "POLLER"]
