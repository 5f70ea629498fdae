"""Anomaly detectors over one series, fed a value at a time.

Each ``score(x)`` says how unusual ``x`` is against what came before (then
learns it); ``x`` is anomalous when the score passes the detector's threshold.

* :class:`EwmaDetector`: exponentially weighted mean and variance, z-score.
  Cheap, adapts to drift; one outlier inflates the variance for a while.
* :class:`MadDetector`: median and median absolute deviation over a sliding
  window; robust to the outliers it is looking for (Hampel filter).
* :class:`SeasonalDetector`: subtracts the value one period earlier (a daily
  pattern), then runs a MAD detector on the residual.
* :class:`StaticThresholdDetector`: the baseline the benchmark compares with:
  mean + k·stddev of a training prefix, never updated.
"""

from __future__ import annotations

import collections
import math
import statistics
from typing import Final, Protocol

# MAD of a normal distribution is 0.6745 sigma: scaling by 1/0.6745 makes a
# MAD score comparable with a z-score.
MAD_TO_SIGMA: Final = 1.4826
# Below this spread every difference would look infinite: a flat series.
SPREAD_FLOOR: Final = 1e-9
WINDOW_SAMPLES_MAX: Final = 100_000


class Detector(Protocol):
    threshold: float

    def score(self, x: float) -> float: ...


def _check(name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


class EwmaDetector:
    def __init__(self, alpha: float = 0.05, threshold: float = 4.0, warmup: int = 20) -> None:
        _check("alpha", alpha, 1e-6, 1.0)
        _check("threshold", threshold, 0.0, 1e6)
        _check("warmup", warmup, 1, WINDOW_SAMPLES_MAX)
        self.alpha, self.threshold, self.warmup = alpha, threshold, int(warmup)
        self.mean = 0.0
        self.var = 0.0
        self.seen = 0

    def score(self, x: float) -> float:
        self.seen += 1
        if self.seen == 1:
            self.mean = x
            return 0.0
        sigma = math.sqrt(self.var)
        z = abs(x - self.mean) / max(sigma, SPREAD_FLOOR) if sigma > SPREAD_FLOOR else 0.0
        if self.seen > self.warmup and sigma <= SPREAD_FLOOR and x != self.mean:
            z = math.inf
        anomalous = self.seen > self.warmup and z > self.threshold
        # An outlier updates the estimates with a tenth of the weight, so one
        # spike does not mask the next few (West's incremental EWM variance).
        a = self.alpha * (0.1 if anomalous else 1.0)
        diff = x - self.mean
        self.mean += a * diff
        self.var = (1 - a) * (self.var + a * diff * diff)
        return z if self.seen > self.warmup else 0.0


class MadDetector:
    def __init__(self, window: int = 60, threshold: float = 4.0, warmup: int = 20) -> None:
        _check("window", window, 3, WINDOW_SAMPLES_MAX)
        _check("threshold", threshold, 0.0, 1e6)
        _check("warmup", warmup, 3, WINDOW_SAMPLES_MAX)
        self.threshold, self.warmup = threshold, int(warmup)
        self.values: collections.deque[float] = collections.deque(maxlen=int(window))

    def score(self, x: float) -> float:
        z = 0.0
        if len(self.values) >= self.warmup:
            median = statistics.median(self.values)
            mad = statistics.median(abs(v - median) for v in self.values) * MAD_TO_SIGMA
            if mad > SPREAD_FLOOR:
                z = abs(x - median) / mad
            elif x != median:
                z = math.inf
        self.values.append(x)
        return z


class SeasonalDetector:
    """Residual against the same phase one ``period`` samples ago, scored by MAD."""

    def __init__(
        self, period: int, window: int = 60, threshold: float = 4.0, warmup: int = 20
    ) -> None:
        _check("period", period, 2, WINDOW_SAMPLES_MAX)
        self.threshold = threshold
        self.history: collections.deque[float] = collections.deque(maxlen=int(period))
        self.inner = MadDetector(window, threshold, warmup)

    def score(self, x: float) -> float:
        if len(self.history) < (self.history.maxlen or 0):
            self.history.append(x)
            return 0.0
        residual = x - self.history[0]
        self.history.append(x)
        return self.inner.score(residual)


class StaticThresholdDetector:
    """mean + k·sigma of the first ``training`` values, fixed afterwards."""

    def __init__(self, training: int = 100, threshold: float = 3.0) -> None:
        _check("training", training, 2, WINDOW_SAMPLES_MAX)
        self.threshold = threshold
        self.training = int(training)
        self.values: list[float] = []
        self.mean = 0.0
        self.sigma = 0.0

    def score(self, x: float) -> float:
        if len(self.values) < self.training:
            self.values.append(x)
            if len(self.values) == self.training:
                self.mean = statistics.fmean(self.values)
                self.sigma = statistics.pstdev(self.values)
            return 0.0
        return abs(x - self.mean) / max(self.sigma, SPREAD_FLOOR)


DETECTORS: Final = ("ewma", "mad", "seasonal")


def make_detector(name: str, threshold: float, period_samples: int = 0) -> Detector:
    if name == "ewma":
        return EwmaDetector(threshold=threshold)
    if name == "mad":
        return MadDetector(threshold=threshold)
    if name == "seasonal":
        return SeasonalDetector(period=period_samples, threshold=threshold)
    raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {name!r:.40}")
