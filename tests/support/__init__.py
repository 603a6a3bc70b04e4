"""Helpers shared by the unit tests, the integration tests and the benchmarks."""
