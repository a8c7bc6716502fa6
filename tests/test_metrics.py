"""--metrics (fastloop/metrics.py): the Prometheus text, read back with prometheus_client's
parser, from a single server process and from a supervisor over two workers, whose counters
stay exact across SIGHUP and whose endpoint answers while a worker is stopped or killed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import sys
import time
import urllib.error
import urllib.request

import pytest
from helpers import env_importing_this_fastloop, wait_until
from serving import ServeProcess, get

from fastloop._durations import RequestDurations, bucket_labels
from fastloop.metrics import CONTENT_TYPE, render

parser = pytest.importorskip("prometheus_client.parser")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="pre-fork needs os.fork")

_METRICS_URL = re.compile(r"metrics on (\S+)")


def families(text):
    """{family name: {(sample name, frozenset of labels): value}}, parsed by prometheus_client."""
    out = {}
    for fam in parser.text_string_to_metric_families(text):
        out[fam.name] = (fam.type, {(s.name, frozenset(s.labels.items())): s.value
                                    for s in fam.samples})
    return out


def scrape(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == CONTENT_TYPE
        return families(resp.read().decode("utf-8"))


def value(fams, name, **labels):
    _, samples = fams[name.removesuffix("_total")]
    return samples[(name, frozenset(labels.items()))]


def per_worker(fams, name):
    """{(worker, pid): value} of a fastloop_worker_* counter."""
    _, samples = fams[name.removesuffix("_total")]
    return {(dict(k)["worker"], dict(k)["pid"]): v for (_, k), v in samples.items()}


def metrics_url(proc):
    wait_until(lambda: _METRICS_URL.search(proc.log()), 5.0)
    m = _METRICS_URL.search(proc.log())
    assert m, proc.log()
    return m.group(1)


def test_render_parses_with_labels_and_sums():
    a = {"accepted": 3, "closed": 2, "open": 1, "requests": 10, "bytes_in": 100,
         "rejected": {"431": 2}, "timeouts": {"header": 1}, "io_errors": {"ECONNRESET": 4},
         "accept_errors": {}}
    b = {"accepted": 5, "closed": 5, "open": 0, "requests": 7, "rejected": {"431": 1, "413": 3},
         "io_errors": {"EPIPE": 1}}
    retired = {"requests": 20, "rejected": {"400": 1}}
    fams = families(render([("0", "100", a), ("1", "101", b)], retired=retired))
    for name, (kind, _) in fams.items():
        assert name.startswith("fastloop_")
        assert kind == ("gauge" if name.endswith(("open_connections", "workers")) else
                        "histogram" if name == "fastloop_request_duration_seconds" else "counter")
    assert value(fams, "fastloop_requests_total") == 37  # the two, and the retired 20
    assert per_worker(fams, "fastloop_worker_requests_total") == {("0", "100"): 10, ("1", "101"): 7}
    assert value(fams, "fastloop_rejected_requests_total", status="431") == 3
    assert value(fams, "fastloop_rejected_requests_total", status="400") == 1
    assert value(fams, "fastloop_worker_rejected_requests_total", worker="1", pid="101",
                 status="413") == 3
    assert value(fams, "fastloop_io_errors_total", errno="ECONNRESET") == 4
    assert value(fams, "fastloop_timeouts_total", kind="header") == 1
    assert value(fams, "fastloop_open_connections") == 1 and value(fams, "fastloop_workers") == 2


# ---- request-duration histograms ------------------------------------------------------------

def test_a_duration_counts_in_the_first_bucket_at_or_above_it():
    d = RequestDurations()
    for status, seconds in ((200, 0.001), (204, 0.0011), (200, 0.0), (500, 11.0), (404, 0.3)):
        d.observe(status, seconds)
    got = d.counters()["request_durations"]
    assert set(got) == {"2xx", "4xx", "5xx"}
    nonzero = {cls: {le: n for le, n in h["buckets"].items() if n} for cls, h in got.items()}
    assert nonzero == {"2xx": {"0.0005": 1, "0.001": 1, "0.0025": 1}, "4xx": {"0.5": 1},
                       "5xx": {"+Inf": 1}}
    assert got["2xx"]["count"] == 3 and got["2xx"]["sum"] == pytest.approx(0.0021)


def histogram(fams, name="fastloop_request_duration_seconds"):
    """{status class: ({le: cumulative count}, sum, count)} of a parsed histogram family."""
    kind, samples = fams[name]
    assert kind == "histogram"
    out: dict = {}
    for (sample, labels), v in samples.items():
        labels = dict(labels)
        buckets, total, count = out.setdefault(labels["status"], ({}, 0.0, 0))
        if sample.endswith("_bucket"):
            buckets[labels["le"]] = v
        elif sample.endswith("_sum"):
            out[labels["status"]] = (buckets, v, count)
        elif sample.endswith("_count"):
            out[labels["status"]] = (buckets, total, v)
    return out


def test_render_sums_histograms_of_workers_and_retired_ones():
    def durations(*observations):
        d = RequestDurations()
        for status, seconds in observations:
            d.observe(status, seconds)
        return d.counters()

    a = durations((200, 0.002), (200, 0.2), (404, 0.0001))
    b = durations((200, 0.002))
    retired = durations((200, 3.0), (503, 0.01))
    text = render([("0", "100", a), ("1", "101", b)], retired=retired)
    got = histogram(families(text))
    buckets, total, count = got["2xx"]
    assert count == 4 and total == pytest.approx(3.204)
    assert list(buckets) == bucket_labels()  # every bound, in order, "+Inf" last
    assert buckets["0.001"] == 0 and buckets["0.0025"] == 2 and buckets["0.25"] == 3
    assert buckets["2.5"] == 3 and buckets["5.0"] == 4 and buckets["+Inf"] == 4
    assert all(x <= y for x, y in zip(list(buckets.values()), list(buckets.values())[1:]))
    assert got["4xx"][2] == 1 and got["4xx"][0]["0.0005"] == 1
    assert got["5xx"][2] == 1
    # No duration observed anywhere: the family is there, with no samples.
    assert families(render([("0", "100", {"requests": 1})]))[
        "fastloop_request_duration_seconds"] == ("histogram", {})


def test_single_process_histograms_python_answers_by_status_class():
    with ServeProcess(["serve_apps:app", "--port", "0", "--metrics", "--metrics-port", "0"]) as proc:
        url = metrics_url(proc)
        assert get(proc.url, "/slow?0.3").startswith(b"slept")
        for _ in range(3):
            get(proc.url, "/pid")
        for path in ("/nowhere", "/items/x"):
            with pytest.raises(AssertionError, match="404"):
                get(proc.url, path)
        get(proc.url, "/")  # a static route: answered by the core, not timed
        assert wait_until(lambda: requests_total(url) == 7, 5.0), scrape(url)
        got = histogram(scrape(url))
    assert set(got) == {"2xx", "4xx"}
    buckets, total, count = got["2xx"]
    assert count == 4 and buckets["+Inf"] == 4
    assert buckets["0.25"] <= 3 and total >= 0.3  # the 0.3 s handler is above 0.25 s
    assert got["4xx"][2] == 2


def test_access_log_and_histograms_observe_the_same_answers():
    # One wrapper serves both; the access log takes the static routes over, so with it on
    # they are timed too.
    with ServeProcess(["serve_apps:app", "--port", "0", "--metrics", "--metrics-port", "0",
                       "--access-log"]) as proc:
        url = metrics_url(proc)
        for path in ("/", "/pid", "/items/7"):
            get(proc.url, path)
        assert wait_until(lambda: requests_total(url) == 3, 5.0), scrape(url)
        assert histogram(scrape(url))["2xx"][2] == 3
        assert wait_until(lambda: proc.log().count('HTTP/1.1" 200') == 3, 5.0), proc.log()


def test_fastloop_runs_without_prometheus_client():
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "import fastloop.metrics, fastloop.serve\n"
            "print(fastloop.metrics.render([('0', '1', {'requests': 1})]).count('# TYPE'))")
    # cwd outside the source tree: on a fresh clone it holds no built extension.
    out = subprocess.run([sys.executable, "-c", code], env=env_importing_this_fastloop(),
                         cwd=tempfile.gettempdir(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 10


def test_single_process_serves_its_own_metrics():
    with ServeProcess(["serve_apps:app", "--port", "0", "--metrics", "--metrics-port", "0"]) as proc:
        url = metrics_url(proc)
        for _ in range(5):
            get(proc.url, "/pid")
        # The core counts a request once its answer is written: it may reach us just before.
        assert wait_until(lambda: requests_total(url) == 5, 5.0), scrape(url)
        fams = scrape(url)
        assert per_worker(fams, "fastloop_worker_requests_total") == {("0", str(proc.pid)): 5}
        assert value(fams, "fastloop_accepted_total") >= 5
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url.replace("/metrics", "/nothing-here"), timeout=5)
    assert "metrics on http://127.0.0.1:" in proc.log()


def requests_total(url):
    return value(scrape(url), "fastloop_requests_total")


def test_supervisor_sums_workers_across_sighup_and_a_dead_worker():
    with ServeProcess(["serve_apps:app", "--port", "0", "-w", "2", "--metrics", "--metrics-port",
                       "0"], ready_workers=2) as proc:
        url = metrics_url(proc)
        pids = set()
        sent = 0
        while len(pids) < 2 and sent < 300:  # new connections until both workers answered
            pids.add(get(proc.url, "/pid").decode())
            sent += 1
        assert len(pids) == 2
        assert wait_until(lambda: requests_total(url) == sent, 5.0), scrape(url)
        fams = scrape(url)
        workers = per_worker(fams, "fastloop_worker_requests_total")
        assert {pid for _, pid in workers} == pids and sorted(w for w, _ in workers) == ["0", "1"]
        assert sum(workers.values()) == sent and value(fams, "fastloop_workers") == 2
        assert histogram(fams)["2xx"][2] == sent

        # SIGHUP: every worker replaced; the summed counters keep what the old ones did.
        proc.signal(signal.SIGHUP)
        proc.wait_for("is accepting", 4, timeout=20)
        assert wait_until(lambda: len(per_worker(scrape(url), "fastloop_worker_requests_total")) == 2
                          and not pids & {p for _, p in per_worker(
                              scrape(url), "fastloop_worker_requests_total")}, 10.0)
        for _ in range(10):
            get(proc.url, "/pid")
        sent += 10
        assert wait_until(lambda: requests_total(url) == sent, 5.0), scrape(url)
        # The retired workers' durations stay in the histogram, as their counters do.
        assert wait_until(lambda: histogram(scrape(url))["2xx"][2] == sent, 5.0), scrape(url)

        # A stopped worker (SIGSTOP) cannot answer anything: the endpoint does not wait for it.
        victim = int(next(iter(per_worker(scrape(url), "fastloop_worker_requests_total")))[1])
        os.kill(victim, signal.SIGSTOP)
        try:
            started = time.monotonic()
            scrape(url, timeout=5.0)
            assert time.monotonic() - started < 4.0
        finally:
            os.kill(victim, signal.SIGCONT)
        # A killed one: its last snapshot stays in the totals, and a successor takes its slot.
        before = requests_total(url)
        os.kill(victim, signal.SIGKILL)
        proc.wait_for("is accepting", 5, timeout=20)
        assert requests_total(url) >= before
        assert wait_until(lambda: str(victim) not in {p for _, p in per_worker(
            scrape(url), "fastloop_worker_requests_total")}, 5.0)


def test_metrics_flags_and_env():
    from fastloop.serve import parse_config

    _, config = parse_config(["m:app", "--metrics", "--metrics-address", "::1",
                              "--metrics-port", "9100"], environ={})
    assert config.metrics and config.metrics_address == "::1" and config.metrics_port == 9100
    _, config = parse_config(["m:app"], environ={"FASTLOOP_METRICS": "yes"})
    assert config.metrics and config.metrics_address == "127.0.0.1" and config.metrics_port == 9090
    with pytest.raises(SystemExit):
        parse_config(["m:app", "--metrics-port", "70000"], environ={})


class _CountingServer:
    def __init__(self):
        self.requests = 0

    def stats(self):
        return {"requests": self.requests, "workers": [{"requests": self.requests}]}


def test_snapshot_writer_writes_the_last_counts_on_close(tmp_path):
    import json

    from fastloop.metrics import SnapshotWriter

    server = _CountingServer()
    path = str(tmp_path / "1.json")
    writer = SnapshotWriter(server, path)
    assert json.loads(open(path).read()) == {"requests": 0}  # per-thread figures left out
    server.requests = 41  # the last requests, after the last periodic snapshot
    writer.close()
    assert json.loads(open(path).read()) == {"requests": 41}
    assert not os.path.exists(path + ".tmp")
