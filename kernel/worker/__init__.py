"""The worker runtime: one plugin's routes and services, served over ZeroMQ."""
