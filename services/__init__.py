"""Default implementations of the core services, provided through the kernel's public hooks."""
