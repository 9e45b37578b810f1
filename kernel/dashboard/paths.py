"""Where the dashboard is served: the page, and the snapshot it reads (``kernel status`` reads it too)."""

PAGE = "/.kernel/dashboard"
SNAPSHOT = f"{PAGE}/v1/snapshot"
