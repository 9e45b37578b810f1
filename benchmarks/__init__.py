"""Load tests for kernel: ``python -m benchmarks --help`` (see benchmarks/README.md)."""
