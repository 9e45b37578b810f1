"""Prometheus metrics of every process of the kernel, served as one aggregated picture.

Every gateway and worker writes its figures with ``prometheus_client`` in multiprocess mode
into one directory the supervisor makes per kernel (``PROMETHEUS_MULTIPROC_DIR``, inherited by
every child): a counter of a process that died stays in its file, so a worker or gateway
restart never makes a counter go back, and histograms of several gateways merge bucket by
bucket. What only the supervisor knows (each process's memory, CPU, state, heartbeat round trip,
restarts) reaches the gateways every tick in a ``Stats`` message and is rendered at scrape time.

- ``kernel.metrics.http``: the gateways' request figures, per plugin;
- ``kernel.metrics.exposition``: the text a scrape gets (Prometheus or OpenMetrics);
- ``kernel.metrics.endpoint``: where it is served (a listener of its own, or a protected path).

A plugin's own metrics need nothing from the kernel: ``prometheus_client`` metrics created in a
worker land in the same directory and appear in the same scrape.
"""
