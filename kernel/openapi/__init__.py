"""OpenAPI documents of plugins: declared (``kernel.openapi_spec``, a contract module), built and served by the worker (``document``),
enforced on requests (``validation``), listed for the operator at the gateway's root (``index``).

A plugin declares ``create_plugin(id, openapi=OpenApi(...))`` (or calls ``router.set_openapi``),
and describes routes with ``router.add_route(..., openapi=Operation(...))``. Its worker serves the
document at ``/api/<pluginId>/openapi.json``, open to anyone as in the reference system, with
``servers`` set to the plugin's external base URL.
"""
