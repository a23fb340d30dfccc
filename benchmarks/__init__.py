"""Benchmarks. Run each as a module from the repository root, e.g. `python -m benchmarks.detection`,
so that benchmarks/logging.py does not shadow the standard library's logging module."""
