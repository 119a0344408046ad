"""Benchmarks: `make bench` prints one table (bench/run.py); never part of the tests."""
