"""Benchmarks run by `imagecache bench NAME` (each module offers `run(argv) -> int`)."""
