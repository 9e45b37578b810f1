"""The kernel process: starts gateways and plugin workers, watches them, restarts, drains, stops.

- ``supervisor``: the run loop (start, watch, restart, drain, stop);
- ``children``: the processes it looks after, and how each is launched;
- ``restarts``: backoff and the flapping limit;
- ``table``: the worker table gateways route by;
- ``control``: the control channel every child joins (handshake, heartbeats, tables, configs).
"""

from kernel.supervisor.supervisor import Supervisor, startup_failure_message

__all__ = ["Supervisor", "startup_failure_message"]
