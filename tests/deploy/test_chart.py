"""deploy/helm/kernel, rendered by a real ``helm template`` for each value set of ``VALUE_SETS``.

Every object is validated against the Kubernetes API's own schemas (``kubernetes-validate``, strict:
an unknown field is an error) for the oldest Kubernetes the chart supports and the newest the package
knows; the two custom resources (ServiceMonitor, HTTPRoute), whose schemas it does not ship, are
checked here for what makes them work: their selectors and references. Then what the chart promises:
probes on the kernel's health endpoints, a Deployment, autoscaler and budget per plugin with its own
replicas and resources, network policies that let only workers reach the worker ports, secrets that
reach only the pods that need them, a locked-down security context everywhere, and renders that fail
with a message naming the value to set.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import redis.connection
import yaml

from kernel.gateway.root import HEALTH
from kernel.plugin import PLUGIN_ID_PATTERN
from tests.deploy.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    REMOTE_PLUGINS,
    VALUE_SETS,
    VALUES,
    Rendered,
    containers,
    helm,
    render,
    selects,
)

pytestmark = pytest.mark.timeout(900)  # the first test installs the pinned tools (scripts/deploy-tools)

#: the oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest kubernetes-validate knows
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
#: custom resources: no schema in kubernetes-validate; checked by hand below
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("gateway.networking.k8s.io/v1", "HTTPRoute")}
KERNEL = f"{RELEASE}-kernel"


def kernel_deployment(r: Rendered) -> dict[str, Any]:
    return r.one("Deployment", KERNEL)


def worker_deployment(r: Rendered, plugin: str) -> dict[str, Any]:
    return r.one("Deployment", f"{KERNEL}-worker-{plugin}")


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_is_valid_for_the_kubernetes_api(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    assert r.objects, f"{name}: nothing rendered"
    checked = 0
    for obj in r.objects:
        assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CUSTOM:
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} on {version}: {where}: {exc.message}")
        checked += 1
    assert checked >= 7


def test_the_validator_refuses_what_the_api_would() -> None:
    """The check above can fail: an unknown field, a string for a number, each refused."""
    good = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}]},
    }
    kubernetes_validate.validate(good, K8S_VERSIONS[0], strict=True)
    for bad in (
        {**good, "spec": {"ports": [{"port": 80}], "portz": []}},
        {**good, "spec": {"ports": [{"port": "eighty"}]}},
    ):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_kernel_is_probed_on_its_health_endpoints(rendered: dict[str, Rendered], name: str) -> None:
    [kernel] = containers(kernel_deployment(rendered[name]))
    ports = {p["name"]: p["containerPort"] for p in kernel["ports"]}
    assert ports["http"] == rendered[name].app_config()["backend"]["listen"]["port"]
    assert kernel["startupProbe"]["httpGet"] == {"path": f"{HEALTH}/liveness", "port": "http"}
    assert kernel["livenessProbe"]["httpGet"] == {"path": f"{HEALTH}/liveness", "port": "http"}
    assert kernel["readinessProbe"]["httpGet"] == {"path": f"{HEALTH}/readiness", "port": "http"}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_sigterm_grace_covers_the_shutdown_delay_and_the_drain(rendered: dict[str, Rendered], name: str) -> None:
    r = rendered[name]
    backend = r.app_config()["backend"]
    delay = float(backend["lifecycle"]["serverShutdownDelay"].removesuffix("s"))
    assert delay > 0  # readiness turns 503 while requests are still served: endpoints drop the pod first
    needed = delay + backend["workers"]["shutdownGrace"] + backend["workers"]["killTimeout"]
    assert kernel_deployment(r)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > needed


def test_a_grace_shorter_than_the_drain_does_not_render(tools: Path, keys: Path) -> None:
    done = helm(tools, "template", RELEASE, str(CHART), "--set", "kernel.terminationGracePeriodSeconds=12")
    assert done.returncode != 0
    assert "kernel.terminationGracePeriodSeconds (12) must exceed" in done.stderr


def test_each_plugin_has_its_own_workers_autoscaler_and_budget(rendered: dict[str, Rendered]) -> None:
    r = rendered["remote"]
    values = yaml.safe_load((VALUES / "remote.yaml").read_text())["workers"]["plugins"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["workers"]["defaults"]
    join = r.app_config()["backend"]["workers"]["remote"]
    for plugin in REMOTE_PLUGINS:
        deployment = worker_deployment(r, plugin)
        [worker] = containers(deployment)
        env = {e["name"]: e.get("value") for e in worker["env"]}
        assert worker["args"] == ["worker"]
        assert env["KERNEL_PLUGIN"] == plugin
        assert env["KERNEL_JOIN"] == f"tcp://{KERNEL}-join.{NAMESPACE}.svc:{join['listen'].rpartition(':')[2]}"
        assert worker["resources"] == values[plugin].get("resources", defaults["resources"])
        assert "ports" not in worker  # workers only dial out
        hpa = r.one("HorizontalPodAutoscaler", f"{KERNEL}-worker-{plugin}")
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
        cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
        assert cpu[0]["resource"]["name"] == "cpu"
        budget = r.one("PodDisruptionBudget", f"{KERNEL}-worker-{plugin}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(budget["spec"]["selector"]["matchLabels"], labels)
        assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    hello = r.one("HorizontalPodAutoscaler", f"{KERNEL}-worker-hello")["spec"]
    assert (hello["minReplicas"], hello["maxReplicas"]) == (3, 12)
    # insights also scales on its requests in flight, as the kernel measures them, through an adapter
    external = [
        m
        for m in r.one("HorizontalPodAutoscaler", f"{KERNEL}-worker-insights")["spec"]["metrics"]
        if m["type"] == "External"
    ]
    assert external[0]["external"]["metric"] == {
        "name": "kernel_worker_requests_in_flight",
        "selector": {"matchLabels": {"plugin_id": "insights"}},
    }
    # the kernel keeps the local workers asked for, and none of a plugin served remotely only
    plugins = r.app_config()["backend"]["workers"]["plugins"]
    assert plugins == {"hello": {"replicas": 0}, "insights": {"replicas": 1}}
    # nothing of the sort without remote workers
    assert not [o for o in rendered["defaults"].objects if "worker" in o["metadata"]["name"]]


def test_workers_join_through_a_service_that_lists_unready_kernels(rendered: dict[str, Rendered]) -> None:
    """A kernel whose plugin has only remote workers is unready until they join: the join Service must
    list it anyway, and the kernel advertises its own pod's address for its gateways."""
    r = rendered["remote"]
    service = r.one("Service", f"{KERNEL}-join")
    assert service["spec"]["publishNotReadyAddresses"] is True
    pod = kernel_deployment(r)["spec"]["template"]
    assert selects(service["spec"]["selector"], pod["metadata"]["labels"])
    remote = r.app_config()["backend"]["workers"]["remote"]
    assert remote["advertise"].startswith("${KERNEL_POD_IP}:")
    [kernel] = containers(kernel_deployment(r))
    pod_ip = [e for e in kernel["env"] if e["name"] == "KERNEL_POD_IP"]
    assert pod_ip[0]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    processes = r.app_config()["backend"]["gateway"]["processes"]
    join = int(remote["listen"].rpartition(":")[2])
    ports = sorted(p["containerPort"] for p in kernel["ports"] if p["name"].startswith(("join", "gateway-")))
    assert ports == list(range(join, join + processes + 1))


def test_network_policies_let_only_workers_reach_the_worker_ports(rendered: dict[str, Rendered]) -> None:
    r = rendered["remote"]
    kernel_pod = kernel_deployment(r)["spec"]["template"]["metadata"]["labels"]
    worker_pods = [worker_deployment(r, p)["spec"]["template"]["metadata"]["labels"] for p in REMOTE_PLUGINS]
    processes = r.app_config()["backend"]["gateway"]["processes"]
    join = int(r.app_config()["backend"]["workers"]["remote"]["listen"].rpartition(":")[2])

    policy = r.one("NetworkPolicy", KERNEL)["spec"]
    assert selects(policy["podSelector"]["matchLabels"], kernel_pod)
    [worker_rule] = [rule for rule in policy["ingress"] if rule["ports"][0]["port"] == join]
    assert worker_rule["ports"] == [{"port": join, "endPort": join + processes, "protocol": "TCP"}]
    [source] = worker_rule["from"]
    assert set(source) == {"podSelector"}  # this namespace only
    chosen = source["podSelector"]["matchLabels"]
    assert all(selects(chosen, labels) for labels in worker_pods)
    assert not selects(chosen, kernel_pod)
    # the other rules open only the HTTP and metrics ports
    others = [p["port"] for rule in policy["ingress"] if rule is not worker_rule for p in rule["ports"]]
    assert sorted(others) == ["http", "metrics"]

    workers = r.one("NetworkPolicy", f"{KERNEL}-workers")["spec"]
    assert all(selects(workers["podSelector"]["matchLabels"], labels) for labels in worker_pods)
    assert not selects(workers["podSelector"]["matchLabels"], kernel_pod)
    [inbound] = workers["ingress"]
    [only] = inbound["from"]
    assert selects(only["podSelector"]["matchLabels"], kernel_pod)
    assert not any(selects(only["podSelector"]["matchLabels"], labels) for labels in worker_pods)
    assert "Egress" in workers["policyTypes"]
    to_kernel = workers["egress"][0]
    assert selects(to_kernel["to"][0]["podSelector"]["matchLabels"], kernel_pod)
    assert to_kernel["ports"] == [{"port": join, "endPort": join + processes, "protocol": "TCP"}]


def test_secrets_reach_only_the_pods_that_need_them(rendered: dict[str, Rendered]) -> None:
    r = rendered["remote"]
    server = f"{KERNEL}-curve-server"
    assert set(r.one("Secret", server)["data"]) == {"server.key", "server.key_secret"}
    assert set(r.one("Secret", f"{KERNEL}-curve-allowed")["data"]) == {f"{p}.key" for p in REMOTE_PLUGINS}
    for plugin in REMOTE_PLUGINS:
        pod = worker_deployment(r, plugin)["spec"]["template"]["spec"]
        assert not pod["automountServiceAccountToken"]
        [worker] = pod["containers"]
        assert "envFrom" not in worker and not any("valueFrom" in e for e in worker["env"])
        [curve] = [v for v in pod["volumes"] if v["name"] == "curve"]
        seen = {(s["secret"]["name"], i["key"]) for s in curve["projected"]["sources"] for i in s["secret"]["items"]}
        # the public half of the kernel's certificate, and the worker's own key: nothing else
        assert seen == {(server, "server.key"), (f"{KERNEL}-worker-{plugin}", "worker.key_secret")}
        mounted = {v["name"] for v in pod["volumes"]}
        assert mounted == {"curve", "tmp", "data"}  # and the two emptyDirs
    # the kernel gets the passwords as files ($file in its app-config), never in its environment
    backend = r.app_config()["backend"]
    assert backend["database"]["connection"]["password"] == {"$file": "../secrets/postgresql/password"}
    assert backend["cache"]["connection"] == {"$file": "../secrets/redis/url"}
    assert backend["rateLimit"]["store"] == {"type": "redis", "connection": {"$file": "../secrets/redis/url"}}
    # the URL the chart made quotes the password as a URL's user part (a space is %20 there, never +)
    url = base64.b64decode(r.one("Secret", f"{KERNEL}-redis")["data"]["url"]).decode()
    assert url == "redis://:redis%20secret@redis.cache.svc:6379/0"
    assert redis.connection.parse_url(url)["password"] == "redis secret"
    # with existing Secrets, the chart makes none
    assert rendered["edge"].all("Secret") == []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_container_is_locked_down(rendered: dict[str, Rendered], name: str) -> None:
    for deployment in rendered[name].all("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in containers(deployment):
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["runAsUser"] == 10001  # the image's user (deploy/Containerfile)
            assert {"limits", "requests"} <= set(container["resources"])
            writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
            assert "/tmp" in writable


def test_the_service_monitor_scrapes_the_metrics_service(rendered: dict[str, Rendered]) -> None:
    r = rendered["edge"]
    [monitor] = r.all("ServiceMonitor")
    service = r.one("Service", f"{KERNEL}-metrics")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert not selects(monitor["spec"]["selector"]["matchLabels"], r.one("Service", KERNEL)["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    [kernel] = containers(kernel_deployment(r))
    metrics = [p for p in kernel["ports"] if p["name"] == "metrics"]
    assert metrics[0]["containerPort"] == r.app_config()["backend"]["metrics"]["port"]
    assert r.app_config()["backend"]["metrics"]["host"] == "0.0.0.0"


def test_the_service_monitor_is_left_out_when_the_cluster_has_no_such_api(tools: Path, keys: Path) -> None:
    wanted = ("--set", "metrics.serviceMonitor.enabled=true")
    assert render(tools, "defaults", keys, *wanted).all("ServiceMonitor") == []
    present = render(tools, "defaults", keys, *wanted, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    assert len(present.all("ServiceMonitor")) == 1


def test_ingress_and_route_send_to_the_kernel_service(rendered: dict[str, Rendered]) -> None:
    r = rendered["edge"]
    [ingress] = r.all("Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": KERNEL, "port": {"name": "http"}}
    [route] = r.all("HTTPRoute")
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == KERNEL
    assert r.app_config()["backend"]["baseUrl"] == "https://kernel.example.com"
    hpa = r.one("HorizontalPodAutoscaler", KERNEL)["spec"]
    assert {m["type"] for m in hpa["metrics"]} == {"Resource", "Pods"}
    assert "replicas" not in kernel_deployment(r)["spec"]
    # with a digest the image is pinned and not pulled again
    [kernel] = containers(kernel_deployment(r))
    assert "@sha256:" in kernel["image"] and kernel["imagePullPolicy"] == "IfNotPresent"


def test_remote_workers_without_keys_do_not_render(tools: Path) -> None:
    done = helm(tools, "template", RELEASE, str(CHART), "-f", str(VALUES / "remote.yaml"))
    assert done.returncode != 0
    assert "set curve.serverSecret" in done.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_passes_strictly(tools: Path, keys: Path, name: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for part in VALUE_SETS[name]:
        args += ["-f", str(keys if part == "keys" else VALUES / part)]
    done = helm(tools, *args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_values_are_checked_against_the_chart_schema(tools: Path) -> None:
    """A misspelt key or an id no plugin can have is an error at render time, naming it, never ignored."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    ids = schema["properties"]["workers"]["properties"]["plugins"]["patternProperties"]
    assert list(ids) == [PLUGIN_ID_PATTERN.pattern]  # the kernel's own rule for plugin ids
    # a plugin may set whatever workers.defaults sets, and nothing else
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["workers"]["defaults"]
    assert set(next(iter(ids.values()))["properties"]) == set(defaults)
    for setting, named in (
        ("kernal.replicas=2", "'kernal' not allowed"),
        ("workers.plugins.hello.replica=2", "'replica' not allowed"),
        ("workers.plugins.Search_Index.replicas=2", "'Search_Index' not allowed"),
        ("postgresql.pluginDivisionMode=tables", "pluginDivisionMode"),
    ):
        done = helm(tools, "template", RELEASE, str(CHART), "--set", setting)
        assert done.returncode != 0 and named in done.stderr, f"{setting}: {done.stderr}"
