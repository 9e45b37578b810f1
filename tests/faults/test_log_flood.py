"""A handler flooding its log: every line reaches the kernel's output, attributed to the plugin, in order.

With no log rate (``backend.logging.rate.linesPerSecond: 0``) and an output read fast enough, the
supervisor relays every line of the worker's pipe, whole and in order (``kernel.supervisor.logrelay``).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from kernel.testing import KernelProcess, make_package, wait_for
from tests import plugins
from tests.conftest import base_config

LINES = 50_000


def test_the_lines_of_a_flooding_plugin_arrive_in_order(tmp_path: Path) -> None:
    make_package(tmp_path, "kernel-test-chatty", {"test_chatty": plugins.CHATTY}, {"chatty": "test_chatty:plugin"})
    make_package(tmp_path, "kernel-test-echo", {"test_echo": plugins.ECHO}, {"echo": "test_echo:plugin"})
    config = base_config()
    config["backend"]["logging"] = {"rate": {"linesPerSecond": 0}}  # type: ignore[index]
    with KernelProcess(config, paths=[tmp_path]) as k, httpx.Client(base_url=k.url, timeout=30) as c:
        chatty = c.get("/api/chatty/flood").json()["pid"]
        ours = re.compile(rf"\[chatty {chatty}\] flood (\d+) ")

        def logged() -> list[int]:
            return [int(n) for n in ours.findall(k.output())]

        assert c.post("/api/chatty/flood", params={"s": 120, "n": LINES}).status_code == 200
        echo = []
        while c.get("/api/chatty/flood").json()["running"]:  # other processes write to the same output meanwhile
            echo.append(c.get("/api/echo/pid").status_code)
        assert c.get("/api/chatty/flood").json()["lines"] == LINES  # the flood ran to the end, not out of time
        wait_for(lambda: len(logged()) >= LINES, 30, lambda: f"{len(logged())} of {LINES} lines arrived")

        assert logged() == list(range(LINES))  # each line once, in the order it was logged
        floods = [line for line in k.output().splitlines() if re.search(r" flood \d+ filler=", line)]
        assert len(floods) == LINES  # and none without the plugin's name
        assert echo and set(echo) == {200}
