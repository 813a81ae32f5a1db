"""Benchmarks per stage: ``python -m r1ov.bench NAME`` (or ``make bench-NAME``, ``make bench``)."""
