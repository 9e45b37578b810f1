"""The gateway: HTTP in front, ZeroMQ behind; routes, authenticates and streams to workers."""
