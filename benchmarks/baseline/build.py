"""Compile the C baseline server (epoll_server.c) for the benchmarks.

``build_baseline()`` returns the path of the binary under ``benchmarks/.build/``,
compiling it with ``cc -O2`` only when the binary is missing or older than the
source. Run this file directly to build and print the path.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["BUILD_DIR", "SOURCE", "build_baseline"]

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "epoll_server.c"
BUILD_DIR = HERE.parent / ".build"


def build_baseline(force: bool = False) -> Path:
    """Return the path of the compiled baseline, (re)building it if needed.

    The compiler is ``$CC`` or ``cc``. Raises ``subprocess.CalledProcessError``
    if the compiler fails; a failed build leaves no binary behind.
    """
    binary = BUILD_DIR / "epoll_server"
    if (
        not force
        and binary.exists()
        and binary.stat().st_mtime >= SOURCE.stat().st_mtime
    ):
        return binary
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name and rename: a server started meanwhile never
    # executes a half-written file, and an interrupted build is never "newer".
    tmp = binary.with_name(binary.name + f".tmp{os.getpid()}")
    cc = shlex.split(os.environ.get("CC", "cc"))
    cmd = [*cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE)]
    try:
        subprocess.run(cmd, check=True)
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    return binary


if __name__ == "__main__":
    print(build_baseline(force="--force" in sys.argv[1:]))
