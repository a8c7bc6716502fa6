"""Builds fastloop's one extension module, fastloop._core, from Cython.

Build settings, read from the environment:
  FASTLOOP_POLLER=kqueue   compile the kqueue backend even on Linux (against libkqueue: its
                           headers and library are found through CFLAGS / LDFLAGS)
  FASTLOOP_DEBUG=1         -O0 -g, FASTLOOP_DEBUG defined, Cython line tracing
  FASTLOOP_ANNOTATE=1      write the cython -a HTML report next to the sources
"""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("FASTLOOP_DEBUG", "") not in ("", "0")
poller = os.environ.get("FASTLOOP_POLLER", "")

macros = [("FASTLOOP_DEBUG", "1" if debug else "0")]
libraries = []
include_dirs = ["fastloop/core"]
if poller == "kqueue":
    macros.append(("FASTLOOP_POLLER_KQUEUE", "1"))
    if sys.platform.startswith("linux"):
        libraries.append("kqueue")
        # libkqueue installs its sys/event.h under include/kqueue
        include_dirs += [d + "/kqueue" for d in ("/usr/include", "/usr/local/include")]
elif poller not in ("", "epoll"):
    sys.exit(f"FASTLOOP_POLLER must be epoll or kqueue, not {poller!r}")

compile_args = ["-O0", "-g"] if debug else ["-O2"]
if debug:
    macros.append(("CYTHON_TRACE_NOGIL", "1"))

extension = Extension(
    "fastloop._core",
    sources=["fastloop/_core.pyx"],
    include_dirs=include_dirs,
    define_macros=macros,
    libraries=libraries,
    extra_compile_args=compile_args + ["-Wno-unused-function"],
)

setup(
    ext_modules=cythonize(
        [extension],
        compiler_directives={"language_level": "3", "linetrace": debug},
        annotate=os.environ.get("FASTLOOP_ANNOTATE", "") not in ("", "0"),
        force=poller == "kqueue",  # the C is the same, but rebuild so the macro takes effect
    ),
)
