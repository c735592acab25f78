"""The operators' metrics, in Prometheus' format: one registry per App (never prometheus_client's global one,
so tests that open many apps do not collide). Labels are fixed words and catalog model names only: never a
prompt, a member's text, an id or a token.

The Runner reports jobs through `saved` and `ended` (the `JobMetrics` of bot/service/running.py), the Discord
layer acknowledgements through `acknowledged`; the queue depth is read from the `Jobs` facade when scraped."""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.service.running import FAILURE_REASONS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LANES = ("fast", "relax")
# A grid on the shapes model takes under a second on a CPU; SDXL on a small GPU can take a minute or more.
JOB_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
# Discord allows 3 seconds for the first response; the bot's budget is ACK_BUDGET (1 s).
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._queue = _QueueDepth()
        self.registry.register(self._queue)
        self.job_seconds = Histogram(
            "dreamgrid_job_seconds", "Seconds from a worker taking a job to its images saved.",
            ["model", "kind"], buckets=JOB_BUCKETS, registry=self.registry)
        self.images = Counter(
            "dreamgrid_images", "Images made and saved (images per second: rate() of it).", ["model"],
            registry=self.registry)
        self.ack_seconds = Histogram(
            "dreamgrid_ack_seconds", "Seconds from receiving a job's interaction to its first response (the "
            "deferral, or the refusal).", buckets=ACK_BUCKETS, registry=self.registry)
        self.failures = Counter(
            "dreamgrid_job_failures", "Jobs that failed or were cancelled, by reason: "
            + ", ".join(FAILURE_REASONS) + ".", ["reason"], registry=self.registry)
        self.jobs = Counter(
            "dreamgrid_jobs", "Jobs that ended, by kind and outcome (done: saved and shown).", ["kind", "outcome"],
            registry=self.registry)
        for reason in FAILURE_REASONS:  # present from the start, so rate() and alerts see the first one
            self.failures.labels(reason=reason)

    def watch_queue(self, waiting: Callable[[], Mapping[str, int]]) -> None:
        """Where the queue depth comes from (`Jobs.waiting`), read at every scrape."""
        self._queue.waiting = waiting

    # The Runner's reports (JobMetrics) and the Discord layer's.
    def saved(self, model: str, kind: str, seconds: float, images: int) -> None:
        self.job_seconds.labels(model=model, kind=kind).observe(seconds)
        self.images.labels(model=model).inc(images)

    def ended(self, kind: str, outcome: str, reason: str | None = None) -> None:
        self.jobs.labels(kind=kind, outcome=outcome).inc()
        if reason is not None:
            self.failures.labels(reason=reason if reason in FAILURE_REASONS else "internal").inc()

    def acknowledged(self, seconds: float) -> None:
        self.ack_seconds.observe(seconds)

    def exposition(self) -> bytes:
        """The text a Prometheus scrape reads (CONTENT_TYPE)."""
        return generate_latest(self.registry)


class _QueueDepth(Collector):
    def __init__(self) -> None:
        self.waiting: Callable[[], Mapping[str, int]] = lambda: {}

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("dreamgrid_queue_jobs", "Jobs waiting for a worker, by lane.", labels=["lane"])]

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("dreamgrid_queue_jobs", "Jobs waiting for a worker, by lane.", labels=["lane"])
        waiting = self.waiting()
        for lane in LANES:
            gauge.add_metric([lane], waiting.get(lane, 0))
        yield gauge
