"""``kernel serve --dev``: saving a plugin's source replaces only that plugin's workers, with no failed request."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import TOKEN, base_config

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_saved_change_replaces_only_that_plugin_and_no_request_fails(tmp_path: Path, site: Path) -> None:
    live = tmp_path / "live"
    make_package(live, "kernel-test-live", {"test_live": plugins.LIVE}, {"live": "test_live:plugin"})
    source = live / "test_live.py"
    k = KernelProcess(base_config(), paths=[site, live], env={"KERNEL_ENV": "development"}).start()
    stop = threading.Event()
    failures: list[tuple[str, int, str]] = []
    served: Counter[str] = Counter()

    def hammer(path: str) -> None:
        with httpx.Client(base_url=k.url, timeout=20, headers=AUTH) as h:
            while not stop.is_set():
                r = h.get(path)
                served[path] += 1
                if r.status_code != 200:
                    failures.append((path, r.status_code, r.text))

    try:
        with httpx.Client(base_url=k.url, timeout=20) as c, ThreadPoolExecutor(4) as pool:
            first = c.get("/api/live/version").json()
            assert first["version"] == "v1"
            echo_pid = c.get("/api/echo/pid", headers=AUTH).json()["pid"]
            load = [pool.submit(hammer, p) for p in ("/api/live/version", "/api/echo/pid")]
            in_flight = pool.submit(c.get, "/api/live/slow", params={"s": "1.5"})
            wait_for(lambda: c.get("/api/live/version").json()["sleeping"] == 1, message="/slow never started")

            source.write_text(source.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
            wait_for(lambda: c.get("/api/live/version").json()["version"] == "v2", 30, k.output)

            slow = in_flight.result()  # the old worker finished what it had taken
            assert slow.status_code == 200 and slow.json() == {"version": "v1", "pid": first["pid"]}
            assert c.get("/api/live/version").json()["pid"] != first["pid"]

            # a broken save: the new worker cannot start, the running one keeps serving
            source.write_text(source.read_text().replace('VERSION = "v2"', 'VERSION = "v3" +'))
            wait_for(lambda: "the new workers did not start" in k.output(), 30, k.output)
            assert c.get("/api/live/version").json()["version"] == "v2"

            source.write_text(source.read_text().replace('VERSION = "v3" +', 'VERSION = "v3"'))
            wait_for(lambda: c.get("/api/live/version").json()["version"] == "v3", 30, k.output)

            stop.set()
            for f in load:
                f.result()
            assert c.get("/api/echo/pid", headers=AUTH).json()["pid"] == echo_pid  # the others never blinked
        assert failures == []
        assert served["/api/live/version"] > 0 and served["/api/echo/pid"] > 0
        assert "plugin 'live' replaced in" in k.output()
        assert "SyntaxError" in k.output()  # the broken save's traceback is in the terminal
    finally:
        stop.set()
        k.stop()
