"""Counters, gauges and histograms rendered in the Prometheus text format (``GET /metrics``)."""

from __future__ import annotations

import bisect
import os
from collections import defaultdict
from dataclasses import dataclass, field

LabelSet = tuple[tuple[str, str], ...]
DEFAULT_BUCKETS_MS = (1, 2, 5, 10, 20, 33, 50, 100, 200, 500, 1000)


def _labels(labels: dict[str, str]) -> LabelSet:
    return tuple(sorted(labels.items()))


def _format(labels: LabelSet) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}"


@dataclass
class Histogram:
    buckets: tuple[float, ...] = DEFAULT_BUCKETS_MS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1


class Metrics:
    """One registry per server (no globals); names are given without the prefix."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[LabelSet, float]] = defaultdict(lambda: defaultdict(float))
        self._gauges: dict[str, dict[LabelSet, float]] = defaultdict(dict)
        self._histograms: dict[str, Histogram] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counters[name][_labels(labels)] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._gauges[name][_labels(labels)] = value

    def observe(self, name: str, value_ms: float) -> None:
        self._histograms.setdefault(name, Histogram()).observe(value_ms)

    def histogram(self, name: str) -> Histogram | None:
        return self._histograms.get(name)

    def gauge(self, name: str, **labels: str) -> float | None:
        return self._gauges[name].get(_labels(labels)) if name in self._gauges else None

    def counter(self, name: str, **labels: str) -> float:
        return self._counters[name].get(_labels(labels), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for name, series in sorted(self._counters.items()):
            lines.append(f"# TYPE telepresence_{name} counter")
            lines += [f"telepresence_{name}{_format(k)} {v:g}" for k, v in sorted(series.items())]
        for name, series in sorted(self._gauges.items()):
            lines.append(f"# TYPE telepresence_{name} gauge")
            lines += [f"telepresence_{name}{_format(k)} {v:g}" for k, v in sorted(series.items())]
        for name, hist in sorted(self._histograms.items()):
            lines.append(f"# TYPE telepresence_{name} histogram")
            cumulative = 0
            for bound, count in zip(hist.buckets, hist.counts, strict=True):
                cumulative += count
                lines.append(f'telepresence_{name}_bucket{{le="{bound:g}"}} {cumulative}')
            lines.append(f'telepresence_{name}_bucket{{le="+Inf"}} {hist.count}')
            lines.append(f"telepresence_{name}_sum {hist.total:g}")
            lines.append(f"telepresence_{name}_count {hist.count}")
        return "\n".join(lines) + "\n"


def process_gauges() -> dict[str, float]:
    """This process's resident memory and open file descriptors (Linux /proc; {} elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        open_fds = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError, IndexError):
        return {}
    return {
        "process_resident_memory_bytes": resident_pages * os.sysconf("SC_PAGE_SIZE"),
        "process_open_fds": open_fds,
    }
