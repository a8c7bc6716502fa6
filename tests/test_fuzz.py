"""Short runs of the atheris harnesses: fuzz/fuzz_http.py over the request-head parser and the
chunked decoder, fuzz/fuzz_response.py over the framing of handler results on real sockets;
plus the regressions fuzzing and fault testing found. The long run is in
docs/reliability.md; without atheris (pip install atheris) the short run is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from helpers import env_importing_this_fastloop

from fastloop._core import ChunkedDecoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "fuzz")
RUNS = 50000


@pytest.mark.skipif(not os.path.isfile(os.path.join(FUZZ, "fuzz_http.py")),
                    reason="fuzz/ is not beside these tests (installed tests only)")
def test_short_fuzz_run(tmp_path):
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    corpus = tmp_path / "corpus"  # libFuzzer adds to its first corpus directory: a scratch one
    corpus.mkdir()
    proc = subprocess.run(
        [sys.executable, os.path.join(FUZZ, "fuzz_http.py"), f"-runs={RUNS}", "-max_total_time=60",
         f"-dict={os.path.join(FUZZ, 'http.dict')}", f"-artifact_prefix={tmp_path}{os.sep}",
         "-seed=1", str(corpus), os.path.join(FUZZ, "corpus")],
        cwd=tmp_path, env=env_importing_this_fastloop(), capture_output=True, text=True, timeout=120)
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith("crash-")]
    if proc.returncode != 0 or crashes:
        kept = os.path.join(ROOT, "fuzz", "crashes")
        os.makedirs(kept, exist_ok=True)
        for name in crashes:  # kept for a regression test
            shutil.copy(tmp_path / name, kept)
    assert proc.returncode == 0 and not crashes, proc.stderr[-4000:]
    assert f"Done {RUNS} runs" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.skipif(not os.path.isfile(os.path.join(FUZZ, "fuzz_response.py")),
                    reason="fuzz/ is not beside these tests (installed tests only)")
def test_short_response_fuzz_run(tmp_path):
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    runs = 5000
    proc = subprocess.run(
        [sys.executable, os.path.join(FUZZ, "fuzz_response.py"), f"-runs={runs}",
         "-max_total_time=60", f"-artifact_prefix={tmp_path}{os.sep}", "-seed=1"],
        cwd=tmp_path, env=env_importing_this_fastloop(), capture_output=True, text=True, timeout=120)
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith("crash-")]
    assert proc.returncode == 0 and not crashes, proc.stderr[-4000:]
    assert f"Done {runs} runs" in proc.stderr, proc.stderr[-2000:]


# ---- regressions ----------------------------------------------------------------------------

LONG_EXT = b"5;" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n"
LONG_TRAILER = b"0\r\nX-T: " + b"x" * 5000 + b"\r\n\r\n"


@pytest.mark.parametrize("data", [LONG_EXT, LONG_TRAILER], ids=["chunk-ext", "trailer"])
def test_a_chunk_line_over_the_limit_is_rejected_however_it_arrives(data):
    split = ChunkedDecoder()
    assert split.feed(data[:4500]) == 400  # in pieces: rejected
    assert ChunkedDecoder().feed(data) == 400  # whole: accepted today
