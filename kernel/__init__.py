"""kernel: a plugin microkernel for backend services; every plugin runs in its own worker process.

The contract (what plugin authors and hook providers rely on; no I/O in any of it):
``api`` (the one module authors import), ``hookspecs`` and ``hooktypes`` (the hooks
and their types), ``plugin``, ``service``, ``core_services``, ``permissions`` (the
permission framework's types), ``errors``, ``settings`` (every kernel setting with
its one default) and ``protocol`` (the wire messages and their codec).

Everything else is internal and may change between releases:

- ``config/``: loading, merging, reloading, validating and redacting the app-config;
- ``logs``: process-wide logging (formats, redaction, crash handlers);
- ``registry``, ``container``: finding installed packages, injecting services;
- ``launch``: how a child process is started and starts up;
- ``transport/``: sockets, endpoints and the handshake between processes;
- ``flow``: credit flow control for streamed bodies;
- ``gateway/``: routing → auth → link to workers → stream, on hypercorn or uvicorn;
- ``worker/``: boot → connection → dispatch → streams, inside each plugin's process;
- ``supervisor/``: children, restarts, worker table, control channel;
- ``cli/``: the ``kernel`` command; ``testing``: helpers for tests with real processes.
"""

__version__ = "0.1.0"
