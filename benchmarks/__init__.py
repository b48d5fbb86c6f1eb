"""Benchmarks: speed and calibration targets, measured as ratios against a baseline in the same run.

Run them all with ``make bench`` (``python -m benchmarks``) or one with
``python -m benchmarks.bench_<name>``.
"""
