"""What a load run measured: per-second slices, per-process totals, and the merged result.

Latencies are kept as ``{bucket_us: count}`` dicts where a bucket is HdrHistogram's
"lowest equivalent value" at 3 significant digits (exact below 2048 µs, then 11 significant
bits). Summing such dicts is exactly adding HDR histograms, so slices from any number of
processes and seconds merge losslessly, and the run's ``HdrHistogram`` (1 µs .. 60 s, 3
digits) is rebuilt from them at the end. Percentiles follow HdrHistogram's rule (the
highest value equivalent to the bucket holding the target count; the lowest for 0%) so a
per-second p99 and the run's p99 are computed the same way.

Counting rules (documented in the CLI help too): ``requests`` counts complete responses of
any status -- what the server answered. ``errors`` counts by class: ``connect``, ``reset``
(closed or reset before the response was complete), ``timeout``, ``protocol`` (unparseable
framing), which are *failed* attempts, plus ``non_2xx``, which are also in ``requests``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

ERROR_CLASSES = ("connect", "reset", "timeout", "protocol", "non_2xx")
FAILURE_CLASSES = ("connect", "reset", "timeout", "protocol")  # attempts with no response
HDR_LOWEST_US = 1
HDR_HIGHEST_US = 60_000_000  # 60 s
HDR_DIGITS = 3
_SUB_BUCKET_BITS = 11  # 2 * 10**3 rounded up to a power of two is 2**11


def new_histogram() -> HdrHistogram:
    """An empty histogram in microseconds, 1 µs .. 60 s, 3 significant digits."""
    return HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_DIGITS)


def bucket_us(value: int) -> int:
    """HdrHistogram's lowest equivalent value for ``value`` µs, clamped to 1 µs .. 60 s."""
    value = min(max(value, HDR_LOWEST_US), HDR_HIGHEST_US)
    shift = value.bit_length() - _SUB_BUCKET_BITS
    return value if shift <= 0 else (value >> shift) << shift


def bucket_top_us(bucket: int) -> int:
    """The highest value equivalent to ``bucket`` (what HdrHistogram reports for it)."""
    shift = bucket.bit_length() - _SUB_BUCKET_BITS
    return bucket if shift <= 0 else bucket + (1 << shift) - 1


def bucket_counts(exact: dict[int, int], into: dict[int, int] | None = None) -> dict[int, int]:
    """Fold exact µs counts into HDR buckets (adding to ``into`` when given)."""
    out: dict[int, int] = {} if into is None else into
    for value, count in exact.items():
        key = bucket_us(value)
        out[key] = out.get(key, 0) + count
    return out


def add_counts(into: dict[int, int], other: dict[int, int]) -> dict[int, int]:
    """``into += other`` for count dicts; returns ``into``."""
    for key, count in other.items():
        into[key] = into.get(key, 0) + count
    return into


def percentile_us(counts: dict[int, int], percentile: float) -> int:
    """Value at ``percentile`` (0..100) of bucketed counts, by HdrHistogram's rule; 0 if empty."""
    total = sum(counts.values())
    if total == 0:
        return 0
    target = max(int(min(percentile, 100.0) * total / 100 + 0.5), 1)
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= target:  # HdrHistogram reports the bucket's top, its bottom for 0%
            return bucket_top_us(bucket) if percentile else bucket
    return bucket_top_us(max(counts))  # unreachable: seen reaches total


def histogram_from_counts(counts: dict[int, int]) -> HdrHistogram:
    """An HdrHistogram holding exactly these bucketed counts."""
    hist = new_histogram()
    for bucket, count in counts.items():
        hist.record_value(bucket, count)
    return hist


@dataclass(slots=True)
class SecondStats:
    """One second of the run (``second`` counts from the shared start), one or more processes."""

    second: int
    requests: int = 0
    bytes_read: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_us: dict[int, int] = field(default_factory=dict)  # bucketed

    def merge(self, other: SecondStats) -> None:
        self.requests += other.requests
        self.bytes_read += other.bytes_read
        add_counts(self.latency_us, other.latency_us)
        for name, count in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count

    def error_total(self) -> int:
        return sum(self.errors.values())

    def latency_ms(self, percentile: float) -> float:
        return percentile_us(self.latency_us, percentile) / 1000.0


@dataclass(slots=True)
class ProcSummary:
    """What one engine (one process) reports when it ends, beside its per-second slices."""

    requests: int = 0
    bytes_read: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    connect_us: dict[int, int] = field(default_factory=dict)  # bucketed connect times
    sample: bytes | None = None  # the first complete response, for the report's server info
    abandoned: int = 0  # in flight when the run was stopped by time; not counted anywhere else
    connections_opened: int = 0
    scheduled: int = 0  # open model: arrivals due by the end (sent or not)
    dispatched: int = 0  # open model: arrivals actually sent
    max_lag_s: float = 0.0  # open model: worst (send time - intended time)
    ended: float = 0.0  # monotonic time the engine stopped
    failure: str | None = None  # the engine crashed; text of the exception

    def merge(self, other: ProcSummary) -> None:
        self.requests += other.requests
        self.bytes_read += other.bytes_read
        for name, count in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count
        add_counts(self.statuses, other.statuses)
        add_counts(self.connect_us, other.connect_us)
        self.sample = self.sample if self.sample is not None else other.sample
        self.abandoned += other.abandoned
        self.connections_opened += other.connections_opened
        self.scheduled += other.scheduled
        self.dispatched += other.dispatched
        self.max_lag_s = max(self.max_lag_s, other.max_lag_s)
        self.ended = max(self.ended, other.ended)


@dataclass(slots=True)
class Progress:
    """A mid-run snapshot handed to ``on_progress`` once per completed second."""

    elapsed_s: float
    requests: int
    errors: int
    last: SecondStats  # the second that just completed, all processes merged
    series: list[SecondStats]  # every completed second so far (do not mutate)


@dataclass(slots=True)
class LoadResult:
    """The merged outcome of a run. Times in seconds, latencies in µs unless named _ms."""

    summary: ProcSummary
    series: list[SecondStats]
    started: float  # monotonic start shared by every process
    duration_s: float
    connections: int
    procs: int
    rate: float | None  # the open model's target rate, None for the closed model
    histogram: HdrHistogram = field(repr=False)
    connect_histogram: HdrHistogram = field(repr=False)
    worker_failures: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return self.summary.requests

    @property
    def errors(self) -> dict[str, int]:
        """Every class present, zeros included."""
        return {name: self.summary.errors.get(name, 0) for name in ERROR_CLASSES}

    @property
    def error_total(self) -> int:
        return sum(self.summary.errors.values())

    @property
    def failed(self) -> int:
        """Attempts that got no complete response (ab's "Failed requests")."""
        return sum(self.summary.errors.get(name, 0) for name in FAILURE_CLASSES)

    @property
    def rps(self) -> float:
        return rate_per_s(self.requests, self.duration_s)

    def latency_ms(self, percentile: float) -> float:
        if self.histogram.get_total_count() == 0:
            return 0.0
        return float(self.histogram.get_value_at_percentile(percentile)) / 1000.0

    def max_latency_ms(self) -> float:
        return float(self.histogram.get_max_value()) / 1000.0


def rate_per_s(count: int, seconds: float) -> float:
    """``count / seconds``, 0 for an empty or instant run."""
    return count / seconds if seconds > 0 else 0.0


def build_result(
    summary: ProcSummary,
    seconds: dict[int, SecondStats],
    started: float,
    config_connections: int,
    procs: int,
    rate: float | None,
    failures: list[str],
) -> LoadResult:
    """Assemble a ``LoadResult`` from merged parts; the histogram comes from the slices."""
    series = [seconds[s] for s in sorted(seconds)]
    latency: dict[int, int] = {}
    for second in series:
        add_counts(latency, second.latency_us)
    return LoadResult(
        summary=summary,
        series=series,
        started=started,
        duration_s=max(summary.ended - started, 0.0),
        connections=config_connections,
        procs=procs,
        rate=rate,
        histogram=histogram_from_counts(latency),
        connect_histogram=histogram_from_counts(summary.connect_us),
        worker_failures=failures,
    )
