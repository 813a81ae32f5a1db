"""Benchmarks per stage: ``python -m r1ov.bench NAME`` (or ``make bench-NAME``, ``make bench``).

A tool beside the CLI: it may import every package, ``r1ov.synthetic`` and ``r1ov.testing``
included (its workloads are synthetic), and nothing imports it.
"""
