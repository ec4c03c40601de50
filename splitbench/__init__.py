"""splitbench: measured, reproducible benchmarks for split computing and model compression."""

__version__ = "0.1.0"
