"""Benchmarks for mtkd (issue #6): run with ``python -m bench.run``; not part of the test suite."""
