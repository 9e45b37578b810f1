"""Policy scans of what deploy/ ships: checkov on every value set's rendered chart and on the container
build file, hadolint on the build file; each first shown to find what it looks for.

checkov without a Prisma Cloud account reports no severities, so nothing tells a HIGH finding from a
LOW one: the bar here is stricter than "no HIGH or CRITICAL", it is no failed check at all. A check
the chart does not meet on purpose is skipped in the chart itself, on the object, with its reason
(``checkov.io/skipN: CKV_...=why`` annotations), and the test lists every skip it accepts below.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import NAMESPACE, ROOT, VALUE_SETS, Rendered

pytestmark = pytest.mark.timeout(900)  # the first test installs the pinned tools (scripts/deploy-tools)

CONTAINERFILE = ROOT / "deploy" / "Containerfile"
#: every skip the chart asks of checkov, and on which objects; a new one must be added here knowingly
ACCEPTED_SKIPS = {
    # a remote worker has no port: no probe can reach it; the kernel's heartbeats judge it (workers.yaml)
    "CKV_K8S_8": "Deployment.platform.prod-kernel-worker-",
    "CKV_K8S_9": "Deployment.platform.prod-kernel-worker-",
    # no image is published with the chart: the digest is the user's build's (values image.digest)
    "CKV_K8S_43": "Deployment.platform.prod-kernel",
}


def checkov(tools: Path, folder: Path) -> list[dict[str, Any]]:
    """checkov's JSON report on ``folder`` (Kubernetes manifests and Dockerfiles), offline."""
    done = subprocess.run(
        [str(tools / "checkov"), "-d", str(folder), "--framework", "kubernetes", "dockerfile",
         "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.stdout.strip(), f"checkov printed no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    return report if isinstance(report, list) else [report]


def failures(reports: list[dict[str, Any]]) -> list[str]:
    return [
        f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']})"
        for r in reports
        for f in r["results"]["failed_checks"]
    ]


def test_checkov_finds_nothing_in_the_chart_or_the_build_file(
    tools: Path, rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    for name, r in rendered.items():
        (tmp_path / f"{name}.yaml").write_text(r.text)
    shutil.copy(CONTAINERFILE, tmp_path / "Dockerfile")  # checkov knows build files by this name only
    reports = {r["check_type"]: r for r in checkov(tools, tmp_path)}
    assert set(reports) == {"kubernetes", "dockerfile"}
    assert reports["dockerfile"]["summary"]["passed"] > 20
    # every workload of every value set was scanned, and its pod template
    results = reports["kubernetes"]["results"]
    scanned = {f["resource"] for kind in ("passed_checks", "failed_checks", "skipped_checks") for f in results[kind]}
    for r in rendered.values():
        for deployment in r.all("Deployment"):
            name = f"{NAMESPACE}.{deployment['metadata']['name']}"
            assert f"Deployment.{name}" in scanned
            assert any(resource.startswith(f"Pod.{name}.") for resource in scanned), name
    assert failures(list(reports.values())) == []
    for skip in reports["kubernetes"]["results"]["skipped_checks"]:
        prefix = ACCEPTED_SKIPS.get(skip["check_id"])
        assert prefix is not None and skip["resource"].startswith(prefix), f"unexpected skip: {skip['check_id']}"
        assert len(skip["check_result"].get("suppress_comment") or "") > 20, f"{skip['check_id']} has no reason"
    assert len(VALUE_SETS) == len(rendered)


def test_checkov_fails_a_pod_that_is_not_locked_down(tools: Path, tmp_path: Path) -> None:
    """The scan above can fail: a privileged root container with no limits is found."""
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: x}\n"
        "spec:\n  containers:\n    - name: c\n      image: busybox:latest\n"
        "      securityContext: {privileged: true, runAsUser: 0}\n"
    )
    found = {line.split()[0] for line in failures(checkov(tools, tmp_path))}
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_11"} <= found  # privileged, escalation, no CPU limit


def hadolint(tools: Path, path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(tools / "hadolint"), "--no-color", "--failure-threshold", "style", "--format", "json", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    findings: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    assert (done.returncode == 0) == (not findings), done.stderr
    return findings


def test_hadolint_finds_nothing_in_the_build_file(tools: Path) -> None:
    assert hadolint(tools, CONTAINERFILE) == []


def test_hadolint_finds_what_it_looks_for(tools: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\nCMD curl example.com\n")
    codes = {f["code"] for f in hadolint(tools, bad)}
    assert {"DL3006", "DL3008", "DL3015", "DL3025"} <= codes  # untagged base, unpinned, recommends, shell CMD


def test_the_build_file_does_what_the_chart_relies_on() -> None:
    """Read, not built (no container engine here): the runtime stage runs as the chart's user under tini,
    installs from the locks with hashes, and bakes no secret in."""
    text = CONTAINERFILE.read_text()
    stages = text.split("\nFROM ")
    assert len(stages) == 3  # a build stage and a runtime stage
    runtime = stages[2]
    assert "COPY --from=build /opt/kernel /opt/kernel" in runtime
    assert "COPY kernel/" not in runtime and "requirements" not in runtime  # only the installed packages
    assert "USER 10001:10001" in runtime
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "kernel"]' in runtime
    assert 'CMD ["serve", "--config", "/etc/kernel/config/app-config.yaml"]' in runtime
    build = stages[1]
    assert "--require-hashes --no-deps -r requirements-serve.lock" in build
    assert "--require-hashes --no-deps -r extras.lock" in build
    assert "--no-build-isolation" in build and "pip check" in build
    for word in ("PASSWORD", "SECRET", "TOKEN", "key_secret", "ARG KEY"):
        assert word not in text.replace("No secret is in the image", ""), word
