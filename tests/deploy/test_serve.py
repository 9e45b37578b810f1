"""A real ``kernel serve`` on the app-config the chart renders (its defaults), probed as the kernel's
Deployment probes it: its startup, liveness and readiness paths answer 200, the metrics path the
ServiceMonitor scrapes answers with the kernel's figures, and ``SIGTERM`` (what Kubernetes sends)
ends it with exit 0 well within the Deployment's ``terminationGracePeriodSeconds``. Only the ports
differ from the pod's (free ones, on loopback: tests run side by side).
"""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from kernel.testing import KernelProcess, wait_for
from tests.deploy.chart import RELEASE, Rendered, containers

pytestmark = pytest.mark.timeout(900)  # the first test installs the pinned tools (scripts/deploy-tools)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status, answer.read().decode()


def test_a_kernel_on_the_chart_config_answers_its_probes_and_leaves_on_sigterm(
    rendered: dict[str, Rendered],
) -> None:
    r = rendered["defaults"]
    deployment = r.one("Deployment", f"{RELEASE}-kernel")
    [kernel] = containers(deployment)
    probes: list[dict[str, Any]] = [kernel[p] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    [monitor] = rendered["edge"].all("ServiceMonitor")
    metrics_path = monitor["spec"]["endpoints"][0]["path"]
    served = KernelProcess(r.app_config())
    try:
        served.start(timeout=90)  # every contrib plugin starts, on a machine shared with other tests
        for probe in probes:
            status, _ = get(served.url + probe["httpGet"]["path"])
            assert status == 200, probe
        scrape = f"http://127.0.0.1:{served.metrics_port}{metrics_path}"
        # the supervisor's figures of every worker arrive with its next sample
        wait_for(lambda: "kernel_worker_state{" in get(scrape)[1], timeout=30, message=f"no worker figures at {scrape}")
        # SIGTERM, then SIGKILL once the grace is over, as the kubelet does: a kill is not exit 0
        code = served.stop(timeout=grace)
    finally:
        served.stop()
    assert code == 0, served.output()[-3000:]
