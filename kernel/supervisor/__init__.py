"""The kernel process: starts gateways and plugin workers, watches them, restarts, drains, stops.

- ``supervisor``: the run loop (start, watch, restart, drain, stop);
- ``children``: the processes it looks after, and how each is launched;
- ``restarts``: backoff and the flapping limit;
- ``table``: the worker table gateways route by;
- ``control``: the control channel every child joins (handshake, heartbeats, tables, configs);
- ``limits`` and ``replace``: workers over their limits, and replacing workers without a gap; they see
  the supervisor only through ``host`` (its news of the children, a narrow view of it), never import it;
- ``stats``: every process's figures; ``sources``: ``--dev``'s watch on plugin sources.
"""

from kernel.supervisor.startup import startup_failure_message
from kernel.supervisor.supervisor import Supervisor

__all__ = ["Supervisor", "startup_failure_message"]
