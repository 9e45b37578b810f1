"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Playwright speaks the DevTools protocol to the Chromium that ``scripts/browser-setup`` finds or
installs (``executable_path``: no browser of Playwright's own is downloaded). The page is loaded
from a real ``kernel serve`` under the kernel's own Content-Security-Policy, the operator types a
token, the page shows each plugin and its worker's pid, then follows a ``kill -9`` of that worker
to the new pid without reloading; a task is triggered from its button; a screenshot is kept.
Skipped only when no Chromium can be had (the reason says why).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from kernel.gateway.middleware.headers import security_headers
from kernel.settings import EdgeSettings
from kernel.testing import KernelProcess, wait_for
from tests.dashboard.support import (
    BROKEN,
    BROKEN_REASON,
    OPERATOR_TOKEN,
    echo_pid,
    plugin_of,
    snapshot,
    start_kernel,
)

ROOT = Path(__file__).resolve().parents[2]
PAGE = "/.kernel/dashboard"
#: seconds the page may take to show what the snapshot says (it polls every second)
SHOWN = 15_000


def chromium_path() -> str:
    """Chromium's path (installed by ``scripts/browser-setup`` when missing); skips the module without one."""
    found = subprocess.run([str(ROOT / "scripts" / "browser-setup")], capture_output=True, text=True, timeout=600)
    if found.returncode != 0 or not found.stdout.strip():
        pytest.skip(f"no headless Chromium: scripts/browser-setup could not install one: {found.stderr.strip()}")
    return found.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelProcess]:
    k = start_kernel(tmp_path_factory.mktemp("browser-site"))
    yield k
    k.stop()


class Watched:
    """A page with what it logged: console messages, uncaught errors, and navigations of its main frame."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        self.errors: list[str] = []
        self.navigations = 0
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("framenavigated", self._navigated)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def _navigated(self, frame: Any) -> None:
        if frame == self.page.main_frame:
            self.navigations += 1

    def policy_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield Watched(context.new_page())
    context.close()


def sign_in(watched: Watched, kernel: KernelProcess, token: str = OPERATOR_TOKEN) -> None:
    page = watched.page
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def worker_row(page: Page, plugin_id: str) -> Any:
    return page.locator(f'#plugins tr.worker[data-plugin="{plugin_id}"]')


def test_the_page_shows_each_worker_and_follows_a_restart_without_reloading(
    watched: Watched, kernel: KernelProcess, tmp_path: Path
) -> None:
    page = watched.page
    boom = httpx.get(kernel.url + "/api/echo/boom", timeout=10)
    assert boom.status_code == 500
    answer = page.goto(kernel.url + PAGE)
    assert answer is not None and answer.status == 200
    # the kernel's own Content-Security-Policy (the page sets none of its own): nothing inline may run
    (csp,) = [value for name, value in security_headers(EdgeSettings())[0] if name == b"content-security-policy"]
    assert answer.headers["content-security-policy"] == csp.decode()
    expect(page.locator("#main")).to_be_hidden()  # the shell shows nothing before a token

    sign_in(watched, kernel, "not-a-known-token")
    expect(page.locator("#login-error")).to_have_text("Invalid credentials", timeout=SHOWN)
    sign_in(watched, kernel)

    pid = wait_for(lambda: echo_pid(kernel), 10, "echo does not answer", ignore=(httpx.HTTPError,))
    row = worker_row(page, "echo")
    expect(row).to_have_attribute("data-pid", str(pid), timeout=SHOWN)
    expect(row.locator("td.pid")).to_have_text(str(pid))
    expect(row.locator("td").nth(3)).to_have_text("ready")
    expect(row.locator("td").nth(4)).to_contain_text("MiB")  # RSS
    expect(row.locator("td").nth(5)).to_contain_text("%", timeout=SHOWN)  # CPU, once two samples are in
    expect(worker_row(page, "metered")).to_have_count(1)
    expect(page.locator(f'#failed tr[data-plugin="{BROKEN}"]')).to_contain_text(BROKEN_REASON)
    expect(page.locator("#errors")).to_contain_text(boom.headers["x-request-id"])
    expect(page.locator("#processes")).to_contain_text("gateway-0")
    restarts = page.locator('#plugins tr.plugin[data-plugin="echo"] td.restarts')
    expect(restarts).to_have_text("0")

    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    os.kill(pid, signal.SIGKILL)
    new_pid = wait_for(
        lambda: (p := echo_pid(kernel)) is not None and p != pid and p,
        20,
        "echo was not restarted",
        ignore=(httpx.HTTPError,),
    )
    expect(row).to_have_attribute("data-pid", str(new_pid), timeout=SHOWN)
    expect(row.locator("td.pid")).to_have_text(str(new_pid))
    expect(restarts).to_have_text("1", timeout=SHOWN)
    assert page.evaluate("window.sameDocument") is True and watched.navigations == 1
    assert plugin_of(snapshot(kernel), "echo")["restarts"] == 1

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height >= 900 and len(data) > 20_000, (width, height, len(data))
    assert watched.policy_violations() == [] and watched.errors == []


def test_a_task_is_triggered_from_its_button_and_the_token_is_asked_once(
    watched: Watched, kernel: KernelProcess
) -> None:
    page = watched.page
    tasks_url = kernel.url + "/api/metered/.scheduler/v1/tasks"
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    def tick() -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(tasks_url, headers=auth, timeout=10).json()["tasks"][0]
        return found

    assert tick()["taskId"] == "tick" and tick()["taskState"]["lastRunEndedAt"] is None  # manual: never ran
    page.goto(kernel.url + PAGE)
    sign_in(watched, kernel)
    task = page.locator('#tasks tr[data-plugin="metered"][data-task="tick"]')
    expect(task).to_contain_text("manual", timeout=SHOWN)
    task.get_by_role("button", name="Trigger").click()
    expect(task).to_contain_text("triggered at", timeout=SHOWN)
    wait_for(lambda: tick()["taskState"]["lastRunEndedAt"], 10, "the triggered task never ran")
    assert watched.policy_violations() == [] and watched.errors == []

    page.reload()  # the token is kept for the tab: no second prompt
    expect(worker_row(page, "echo")).to_have_count(1, timeout=SHOWN)
    expect(page.locator("#login")).to_be_hidden()
    page.click("#forget")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def chart(page: Page, plugin_id: str, series: str) -> Any:
    return page.locator(f'#trends canvas[data-plugin="{plugin_id}"][data-series="{series}"]')


def test_trends_draw_each_plugins_figures_over_time_under_the_csp(watched: Watched, kernel: KernelProcess) -> None:
    page = watched.page
    page.goto(kernel.url + PAGE)
    sign_in(watched, kernel)
    for series in ("rps", "p99", "inflight", "rss"):
        expect(chart(page, "echo", series)).to_have_count(1, timeout=SHOWN)
    expect(chart(page, "metered", "rss")).to_have_count(1)
    # a point per snapshot: the series grows while the page stays
    wait_for(lambda: int(chart(page, "echo", "rss").get_attribute("data-points") or 0) >= 3, 20, "points")
    assert float(chart(page, "echo", "rss").get_attribute("data-last") or 0) > 1_000_000  # a worker's RSS, in bytes

    # traffic shows in the req/s series (the workers' heartbeats carry their request rate)
    def busy() -> bool:
        with httpx.Client(base_url=kernel.url, timeout=10) as client:
            for _ in range(30):
                client.get("/api/echo/pid")
        return float(chart(page, "echo", "rps").get_attribute("data-last") or 0) > 0

    wait_for(busy, 30, "the req/s series never rose")
    label = chart(page, "echo", "rps").get_attribute("aria-label") or ""
    assert label.startswith("echo req/s ") and "peak" in label
    # drawn in the page: the canvas holds pixels of the line (not only the zero line)
    painted = page.evaluate(
        """(c) => { const d = c.getContext("2d").getImageData(0, 0, c.width, c.height - 2).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""",
        chart(page, "echo", "rss").element_handle(),
    )
    assert painted > 50, painted
    assert watched.policy_violations() == [] and watched.errors == []
