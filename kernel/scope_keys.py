"""The ASGI scope keys the kernel sets, in one place: who writes each, who reads it.

A leaf module (it imports nothing), so that an outer layer of the gateway can read what an inner one
writes without importing it, and the worker writes what plugin code reads.

In the gateway:

- ``PLUGIN``: the plugin id of a request under the mount; written by the dispatcher
  (``kernel.gateway.dispatcher``) before credentials are checked; read by the access log, the metrics
  and the tracing layer.
- ``PRINCIPAL``: the verified caller (``kernel.protocol.Principal``); written by the dispatcher once
  credentials are checked; read by the access log and the tracing layer.
- ``ADMISSION``: the rate limit's check (``async (scope, plugin_id, principal | None) -> None``);
  written by the rate-limit layer, called by the dispatcher once the principal is known.
- ``REQUEST_ID``: the request's id; written by the observe layer (``kernel.gateway.requestid``),
  read by the access log and the tracing layer.

In a worker:

- ``PRINCIPAL`` again: the caller the gateway verified, in the scope of the plugin's own ASGI app
  (written by ``kernel.worker.dispatch``; read by the ``http_auth`` service).
"""

PLUGIN = "kernel.plugin"
PRINCIPAL = "kernel.principal"
ADMISSION = "kernel.admission"
REQUEST_ID = "kernel.request_id"
