"""The performance suite run by `bench/bench_perf.py` (`make bench`); see docs/performance.md.

Each measurement runs in a child process of its own (`bench_perf.py --child SPEC`) that
imports only what it measures: Cerebelum, DBOS, or the bare drivers for the floor.
"""
