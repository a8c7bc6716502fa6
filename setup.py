"""Builds fastloop's two extension modules from Cython: fastloop._core (the server) and
fastloop._bench (the load generator, `fastloop bench`). They share only C headers.

Build settings, read from the environment:
  FASTLOOP_POLLER=kqueue   compile the kqueue backend even on Linux, against libkqueue. Its
                           headers are found through CFLAGS / CPPFLAGS (-I<prefix>/include) or
                           CPATH / C_INCLUDE_PATH, its library through LDFLAGS (-L<prefix>/lib)
                           or LIBRARY_PATH; at run time the loader must find libkqueue.so too
                           (e.g. LD_LIBRARY_PATH=<prefix>/lib).
  FASTLOOP_DEBUG=1         -O0 -g, FASTLOOP_DEBUG defined, Cython line tracing
  FASTLOOP_ANNOTATE=1      write the cython -a HTML report next to the sources
  FASTLOOP_SANITIZE=address,undefined   compile and link with -fsanitize=<that list> (any
                           list the compiler takes); see docs/reliability.md to run the tests
"""

import os
import shlex
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup


def libkqueue_include_dirs() -> list:
    """libkqueue installs its header as <includedir>/kqueue/sys/event.h, so that it cannot shadow
    a system one: for each include directory the build is told about (CFLAGS / CPPFLAGS -I,
    CPATH, C_INCLUDE_PATH) and the system ones, add its kqueue/ subdirectory where that header
    is. A directory that already holds sys/event.h itself needs nothing added."""
    candidates = []
    for var in ("CFLAGS", "CPPFLAGS"):
        args = shlex.split(os.environ.get(var, ""))
        for i, arg in enumerate(args):
            if arg in ("-I", "-isystem", "-idirafter") and i + 1 < len(args):
                candidates.append(args[i + 1])
            elif arg.startswith("-I") and len(arg) > 2:
                candidates.append(arg[2:])
    for var in ("CPATH", "C_INCLUDE_PATH"):
        candidates += [d for d in os.environ.get(var, "").split(os.pathsep) if d]
    candidates += ["/usr/local/include", "/usr/include"]
    found = []
    for d in candidates:
        sub = os.path.join(d, "kqueue")
        if os.path.isfile(os.path.join(sub, "sys", "event.h")) and sub not in found:
            found.append(sub)
    return found


debug = os.environ.get("FASTLOOP_DEBUG", "") not in ("", "0")
poller = os.environ.get("FASTLOOP_POLLER", "")

macros = [("FASTLOOP_DEBUG", "1" if debug else "0")]
libraries = ["z"]  # zlib, for WebSocket permessage-deflate (core/ws_deflate.pyx)
include_dirs = ["fastloop/core"]
if poller == "kqueue":
    macros.append(("FASTLOOP_POLLER_KQUEUE", "1"))
    if sys.platform.startswith("linux"):
        libraries.append("kqueue")
        include_dirs += libkqueue_include_dirs()
elif poller not in ("", "epoll"):
    sys.exit(f"FASTLOOP_POLLER must be epoll or kqueue, not {poller!r}")

compile_args = ["-O0", "-g"] if debug else ["-O2"]
if debug:
    macros.append(("CYTHON_TRACE_NOGIL", "1"))

extensions = [
    Extension(
        "fastloop._core",
        sources=["fastloop/_core.pyx"],
        include_dirs=include_dirs,
        define_macros=macros,
        libraries=libraries,
        extra_compile_args=compile_args + ["-Wno-unused-function"],
    ),
    # The client loops reach the server's headers (poller.h, buf.h, scan.h) from fastloop/core
    # and their own (client.h) from fastloop/loadgen.
    Extension(
        "fastloop._bench",
        sources=["fastloop/_bench.pyx"],
        include_dirs=include_dirs + ["fastloop/loadgen"],
        define_macros=macros,
        libraries=libraries,
        extra_compile_args=compile_args + ["-Wno-unused-function"],
    ),
]

# Sanitizer builds (docs/reliability.md): frame pointers for readable reports, and every UBSan
# finding fatal so that a test run cannot scroll past one.
sanitize = os.environ.get("FASTLOOP_SANITIZE", "")
if sanitize:
    sanitize_flags = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
    if "undefined" in sanitize.split(","):
        sanitize_flags.append("-fno-sanitize-recover=undefined")
    for extension in extensions:
        extension.extra_compile_args += sanitize_flags
        extension.extra_link_args += sanitize_flags

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "linetrace": debug},
        annotate=os.environ.get("FASTLOOP_ANNOTATE", "") not in ("", "0"),
        force=poller == "kqueue",  # the C is the same, but rebuild so the macro takes effect
    ),
)
