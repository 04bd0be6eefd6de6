"""Helpers that the benchmarks, the fault-injection runs and the tests share."""
