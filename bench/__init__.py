"""Benchmarks for `make bench`: each compares the project against a baseline measured
in the same run on the same machine, never against a fixed number."""
