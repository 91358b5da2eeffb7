"""Per-frontend, per-backend and per-server counters: plain slotted attributes the data path
adds to inline, read only when the stats page, the metrics or the runtime socket ask.

A request or connection is counted once, in one object: its server's, or its backend's own when
no server took it, or its frontend's when it never became a request (accounting.py). Backend and
frontend totals are sums made when read (`summed`). Histograms are bucket counters (a list
increment; most answers land in the first bucket, found by one comparison); the Prometheus
collector turns them into cumulative buckets at scrape time.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Iterable

# Upper bounds, seconds: Prometheus' defaults from 1 ms, dense where a proxy's answers fall.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AVG_WINDOW = 1024  # HAProxy averages response times over its last 1024 samples
# Index into Counters.hrsp by status code: 1xx..5xx, else "other" (0 is "the client saw nothing").
STATUS_CLASS = [0] * 100 + [1] * 100 + [2] * 100 + [3] * 100 + [4] * 100 + [5] * 100 + [0] * 400
_SUMMED = ("bytes_in", "bytes_out", "requests", "req_errors", "resp_errors", "conn_errors", "denied",
           "retries", "redispatches", "cli_aborts", "srv_aborts", "rt_sum", "rt_count", "ct_sum", "ct_count")


class Counters:
    """What HAProxy counts for a proxy or a server, where virtserve has the same notion."""

    __slots__ = (
        "bytes_in", "bytes_out", "max_cur", "requests", "req_errors", "resp_errors", "conn_errors",
        "denied", "retries", "redispatches", "hrsp", "cli_aborts", "srv_aborts",
        "qtime", "ctime", "rtime", "ttime",  # running averages (seconds), HAProxy's swrate
        "rt_hist", "rt_sum", "rt_count", "ct_hist", "ct_sum", "ct_count",
    )

    def __init__(self) -> None:
        self.bytes_in = 0  # from the client (request side)
        self.bytes_out = 0  # to the client (response side)
        self.max_cur = 0  # highest concurrent sessions seen
        self.requests = 0  # HTTP requests (mode http)
        self.req_errors = 0  # requests refused as invalid or timed out
        self.resp_errors = 0  # invalid or failed responses
        self.conn_errors = 0  # failed connection attempts to a server
        self.denied = 0  # requests denied by a rule (HAProxy dreq): no deny action exists yet, so 0
        self.retries = 0  # connection attempts retried on the same request
        self.redispatches = 0  # retries that went to another server
        self.hrsp = [0, 0, 0, 0, 0, 0]  # responses by class: other, 1xx, 2xx, 3xx, 4xx, 5xx
        self.cli_aborts = 0
        self.srv_aborts = 0
        self.qtime = self.ctime = self.rtime = self.ttime = 0.0
        self.rt_hist = [0] * (len(BUCKETS) + 1)  # total request time; last slot is +Inf
        self.rt_sum = 0.0
        self.rt_count = 0
        self.ct_hist = [0] * (len(BUCKETS) + 1)  # connect time (new server connections)
        self.ct_sum = 0.0
        self.ct_count = 0

    def status(self, code: int) -> None:
        self.hrsp[STATUS_CLASS[code] if 0 <= code < 1000 else 0] += 1

    def request_time(self, total: float, response: float) -> None:
        """A request ended after `total` seconds, its server answering after `response`."""
        self.rt_hist[0 if total <= 0.001 else bisect_left(BUCKETS, total)] += 1
        self.rt_sum += total
        self.rt_count += 1
        # A running average over the last ~AVG_WINDOW samples (HAProxy's swrate_add_dynamic:
        # the window grows with the sample count, so the first answers are not biased to 0).
        n = self.rt_count if self.rt_count < AVG_WINDOW else AVG_WINDOW
        self.ttime += (total - self.ttime) / n
        if response >= 0:
            self.rtime += (response - self.rtime) / n

    def connect_time(self, seconds: float) -> None:
        self.ct_hist[0 if seconds <= 0.001 else bisect_left(BUCKETS, seconds)] += 1
        self.ct_sum += seconds
        self.ct_count += 1
        self.ctime += (seconds - self.ctime) / (self.ct_count if self.ct_count < AVG_WINDOW else AVG_WINDOW)

    def seen(self, current: int) -> None:
        if current > self.max_cur:
            self.max_cur = current


def summed(parts: Iterable[Counters]) -> Counters:
    """One Counters holding the totals of parts (read time only): counts and histograms add up,
    running averages are weighted by how many samples each part averaged (up to its window)."""
    total = Counters()
    wr = wc = 0
    for c in parts:
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(c, name))
        total.max_cur = max(total.max_cur, c.max_cur)
        for i, n in enumerate(c.hrsp):
            total.hrsp[i] += n
        for i, n in enumerate(c.rt_hist):
            total.rt_hist[i] += n
        for i, n in enumerate(c.ct_hist):
            total.ct_hist[i] += n
        w = min(c.rt_count, AVG_WINDOW)
        total.ttime += c.ttime * w
        total.rtime += c.rtime * w
        wr += w
        w = min(c.ct_count, AVG_WINDOW)
        total.ctime += c.ctime * w
        wc += w
    if wr:
        total.ttime /= wr
        total.rtime /= wr
    if wc:
        total.ctime /= wc
    return total
