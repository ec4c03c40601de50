"""Wall-clock timing of inference: kept importable; the timer lives in :mod:`splitbench.metrics`.

:class:`Timing`, :func:`time_ms`, :func:`median_ms`, :func:`dataset_ms` and
:func:`dataset_timing` are the metrics kit's own objects, re-exported here for modules that
still import them from ``splitbench.timing``; new code imports ``splitbench.metrics``.
"""

from splitbench.metrics import Timing, dataset_ms, dataset_timing, median_ms, time_ms

__all__ = ["Timing", "dataset_ms", "dataset_timing", "median_ms", "time_ms"]
