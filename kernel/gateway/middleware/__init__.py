"""Gateway middleware: plain ASGI classes, one per module."""
