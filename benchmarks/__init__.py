"""Benchmarks. Run each as a module from the repository root, e.g. `python -m benchmarks.detection`,
so that their imports of `benchmarks` and `core` resolve."""
