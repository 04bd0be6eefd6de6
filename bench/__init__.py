"""Benchmarks of the inventory service; run each as `python -m bench.<name>` from the repo root."""
