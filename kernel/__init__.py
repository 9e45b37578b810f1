"""kernel: a plugin microkernel for backend services; every plugin runs in its own worker process."""

__version__ = "0.1.0"
