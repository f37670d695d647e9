"""Deterministic signal simulators for tests, benchmarks and the demo room.

Each simulator streams samples with ``next_chunk(n)`` and has controls that
change what the next samples look like (a desaturation, a probe off, a cement
injection...). Same seed and same control calls give the same samples.
"""
