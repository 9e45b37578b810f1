"""``python -m kernel.worker``: started by the supervisor, never by hand."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import msgspec

from kernel.procutil import die_with_parent, install_event_loop_policy


def run() -> int:
    die_with_parent(int(os.environ["KERNEL_PARENT_PID"]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    from kernel.worker.runtime import BootError, WorkerSpec, main
    from services.logger import configure

    spec = msgspec.json.decode(os.environ["KERNEL_WORKER_SPEC"], type=WorkerSpec)
    configure(os.environ.get("KERNEL_LOG_LEVEL", "info"))
    install_event_loop_policy()
    try:
        return asyncio.run(main(spec))
    except BootError as exc:
        print(f"kernel: plugin '{spec.plugin_id}' failed to start: {exc}", file=sys.stderr)
        return 3
    except Exception:
        import traceback

        print(f"kernel: plugin '{spec.plugin_id}' failed to start:", file=sys.stderr)
        traceback.print_exc()
        return 3


if __name__ == "__main__":
    sys.exit(run())
