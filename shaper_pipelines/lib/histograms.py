"""Reading Prometheus histograms and counters the way Prometheus does, without a Prometheus: what
the load agent needs to judge a service from its own ``/metrics`` scraped every second, and the
Locust side's latency from its cumulative buckets. Pure functions, no I/O.

- ``quantile_from_buckets``: ``histogram_quantile`` over cumulative bucket counts;
- ``increase``: what a set of counters (a histogram's buckets) gained between two readings;
- ``parse_exposition``: the text format read by ``prometheus_client``'s own parser, with the two
  questions a reader asks of it (a counter's or gauge's value, a histogram's buckets).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families


def quantile_from_buckets(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """The ``q`` quantile of observations counted in cumulative buckets, as Prometheus'
    ``histogram_quantile`` computes it.

    ``bounds`` are the upper bounds (``le``) in increasing order, the last one +Inf;
    ``counts[i]`` is how many observations were at most ``bounds[i]``. The quantile is
    interpolated linearly inside the bucket where it falls (the first bucket starts at 0); one
    that falls in the +Inf bucket is the largest finite bound. NaN when nothing was observed (or
    fewer than two buckets are given, or the last bound is not +Inf, as in Prometheus); -Inf and
    +Inf for ``q`` below 0 and above 1.
    """
    if len(bounds) != len(counts):
        raise ValueError(f"{len(bounds)} bounds for {len(counts)} counts")
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(bounds) < 2 or not math.isinf(bounds[-1]):
        return math.nan
    # Cumulative counts never fall; a reading that does (buckets scraped while being updated) is
    # made monotonic, as Prometheus does.
    cumulative, highest = [], 0.0
    for c in counts:
        highest = max(highest, float(c))
        cumulative.append(highest)
    total = cumulative[-1]
    if total <= 0:
        return math.nan
    rank = q * total
    b = next((i for i, c in enumerate(cumulative[:-1]) if c >= rank), len(bounds) - 1)
    if b == len(bounds) - 1:
        return float(bounds[-2])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    start = 0.0 if b == 0 else float(bounds[b - 1])
    below = 0.0 if b == 0 else cumulative[b - 1]
    in_bucket = cumulative[b] - below
    if in_bucket <= 0:
        return start
    return start + (float(bounds[b]) - start) * (rank - below) / in_bucket


def increase(before: Mapping[float, float], after: Mapping[float, float]) -> dict[float, float]:
    """What each counter of ``after`` gained since ``before`` (a missing one counts from 0).

    A counter that went down was reset (its process restarted) and counted again from zero: its
    increase is its value in ``after``. For a histogram's buckets, which reset together, any
    bucket that went down means they all did, so the result is then ``after`` as a whole: the
    buckets stay cumulative, which a per-bucket rule would not guarantee."""
    if any(value < before.get(key, 0.0) for key, value in after.items()):
        return dict(after)
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


class Exposition(dict):
    """Samples by name: ``{sample name: [(labels, value), ...]}``, with two readers."""

    def _samples(self, name: str) -> list[tuple[dict, float]]:
        if name in self:
            return self[name]
        return self.get(name + "_total", [])  # a counter named as its family

    def has(self, name: str) -> bool:
        return bool(self._samples(name))

    def value(self, name: str, label: str | None = None, values: Sequence[str] | None = None,
              **labels: str) -> float | None:
        """The sum of the samples named ``name`` (or ``name_total``) whose labels match: ``label``
        in ``values``, and each of ``labels`` equal. None when there is no such sample."""
        found = [v for lbl, v in self._samples(name)
                 if (label is None or lbl.get(label) in (values or ()))
                 and all(lbl.get(k) == want for k, want in labels.items())]
        return float(sum(found)) if found else None

    def buckets(self, name: str) -> dict[float, float]:
        """A histogram's cumulative buckets ``{le: count}`` by its base name (without ``_bucket``),
        summed over its other labels; empty when it is not there."""
        out: dict[float, float] = {}
        for labels, v in self.get(name + "_bucket", []):
            le = float(labels["le"])
            out[le] = out.get(le, 0.0) + v
        return dict(sorted(out.items()))


def parse_exposition(text: str) -> Exposition:
    """The samples of a Prometheus text exposition, read by ``prometheus_client``'s parser.
    Raises ValueError on text that does not parse."""
    out = Exposition()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out
