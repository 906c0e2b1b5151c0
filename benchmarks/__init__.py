"""Throughput and memory benchmarks of ``sareval shape`` against the naive way.

- :mod:`benchmarks.shape_throughput`: naive vs ``sareval shape`` (onnxruntime, torch) vs the
  compute bound, in one run (``python -m benchmarks.shape_throughput``).
- :mod:`benchmarks.naive_shape`: the naive baseline (2^M passes over the GeoTIFF tree).
- :mod:`benchmarks.memory_scaling`: peak RSS of ``sareval shape`` on splits of N and 10N.
- :mod:`benchmarks.common`: machine description, timing, peak memory, cached inputs.

Recorded figures: ``benchmarks/RESULTS.md``.
"""
