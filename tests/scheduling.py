"""How the suite spreads over pytest-xdist workers: whole files, heaviest first, the ``ALONE`` tests last.

``scripts/test`` runs ``pytest -n <N> --dist loadfile``; ``tests/conftest.py`` then hands xdist
``FileScheduling`` (the hook ``pytest_xdist_make_scheduler``), which is ``loadfile`` with three changes:

- a file's tests go to one worker (most files share one kernel per module, a module-scoped fixture,
  which a worker then starts once, and a file's tests keep their order), except the files in ``SPLIT``,
  which start what they need per test: their tests go one by one;
- files go out heaviest first (``SECONDS``: each file's measured time, the longest-processing-time
  rule), so that no long file starts last while the other workers have nothing left to do;
- the tests in ``ALONE_TESTS`` (a timing window that other tests' load could break: a heartbeat
  timeout of one second...) run last, together, once every other worker is idle: nothing shares the
  machine with them.

All three work on test ids in xdist's controller, which collects nothing: ``xdist_group`` marks do not
reach it under pytest 9 (xdist's ``@group`` suffix of a test id is no longer taken), so a list here is
the one place. ``SECONDS`` and ``SPLIT`` only tune the speed: a file missing from them, or there by a
stale name, still runs, at the default weight. Re-measure with ``--durations=0`` when the suite's shape
changes. Test ids stay as they are: a failed test's id can be pasted back into ``pytest``.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any

from xdist.scheduler import LoadScopeScheduling

#: heavy files whose tests share nothing costly (a kernel per test, no module-scoped kernel): one unit per test
SPLIT = frozenset(
    {
        "tests/cli/test_cli.py",
        "tests/isolation/test_cgroups.py",
        "tests/isolation/test_redis_users.py",
        "tests/cli/test_config.py",
        "tests/cli/test_new.py",
        "tests/cli/test_plugin_scan.py",
        "tests/supervisor/test_limits.py",
        "tests/supervisor/test_supervisor.py",
        "tests/test_benchmarks.py",
        "tests/test_first_hour.py",
        "tests/test_hooks.py",
        "tests/test_properties.py",
        "tests/worker/test_modules.py",
        "contrib_plugins/frobs_aggregator/tests/test_frobs_aggregator_config.py",
        "contrib_plugins/insights/tests/test_kernel_insights_config.py",
    }
)

#: seconds of each heavy file (setup, call and teardown of its tests; measured under -n 4 on 2 cores)
SECONDS: dict[str, float] = {
    "tests/test_release.py": 100,  # builds and installs wheels into a fresh venv
    "tests/cluster/test_two_kernels.py": 100,
    "tests/gateway/test_ratelimit_stores.py": 30,
    "tests/supervisor/test_shutdown_delay.py": 15,
    "tests/supervisor/test_supervisor.py": 79,
    "tests/remote/test_remote_workers.py": 65,
    "tests/test_docs.py": 77,
    "tests/cli/test_plugin_scan.py": 68,
    "tests/cli/test_cli.py": 57,
    "tests/gateway/test_hardened_edge.py": 48,
    "tests/cli/test_new.py": 47,
    "tests/test_hooks.py": 43,
    "tests/supervisor/test_rollout.py": 42,  # measured -n0 on a loaded machine: 36-46 s
    "tests/test_first_hour.py": 39,
    "tests/test_benchmarks.py": 38,
    "tests/services/test_auth_keys.py": 37,
    "tests/cli/test_config.py": 36,
    "tests/fuzz/test_schemathesis.py": 32,
    "tests/faults/test_misbehaving_handlers.py": 30,
    "tests/rollout/test_routes.py": 28,  # measured -n0 on a loaded machine
    "tests/isolation/test_cgroups.py": 120,
    "tests/isolation/test_attacker.py": 60,
    "tests/isolation/test_redis_users.py": 60,
    "tests/isolation/test_attacker_os_users.py": 25,
    "tests/supervisor/test_limits.py": 30,
    "tests/gateway/test_requests.py": 29,
    "contrib_plugins/frobs_aggregator/tests/test_frobs_aggregator_config.py": 28,
    "contrib_plugins/insights/tests/test_kernel_insights_config.py": 28,
    "tests/metrics/test_metrics.py": 23,
    "tests/services/test_auth_tokens.py": 22,
    "tests/gateway/test_root.py": 21,
    "contrib_plugins/auth/tests/test_kernel_auth_keys.py": 20,
    "tests/services/test_database.py": 19,
    "tests/cli/test_status.py": 19,
    "tests/worker/test_modules.py": 18,
    "tests/services/test_scheduler.py": 18,
    "tests/test_properties.py": 18,
    "tests/gateway/test_websockets.py": 17,
    "tests/supervisor/test_os_users.py": 15,
    "contrib_plugins/insights/tests/test_kernel_insights_kernel.py": 15,
    "contrib_plugins/proxy/tests/test_kernel_proxy_kernel.py": 15,
    "contrib_plugins/auth/tests/test_kernel_auth_guest.py": 14,
    "tests/gateway/test_edge_ratelimit.py": 14,
    "tests/supervisor/test_no_gap.py": 13,
    "tests/gateway/test_config_reload.py": 12,
    "contrib_plugins/frobs_aggregator/tests/test_frobs_aggregator_outages.py": 12,
    "tests/supervisor/test_dev_reload.py": 12,
    "tests/faults/test_sqlite_disk.py": 11,
    "tests/services/test_permissions.py": 11,
    "tests/gateway/test_edge_tls.py": 11,
    "tests/services/test_logger.py": 11,
    "tests/interop/test_backstage_tokens.py": 10,
    "tests/test_tracing.py": 10,
    "tests/faults/test_redis_outage.py": 10,
    "tests/dashboard/test_browser.py": 10,
    "tests/gateway/test_rogue_peers.py": 9,
    "tests/supervisor/test_identity.py": 9,
    "tests/services/test_cache.py": 9,
    "contrib_plugins/proxy/tests/test_kernel_proxy_websocket.py": 8,
    "contrib_plugins/myawesomeapi_client/tests/test_myawesomeapi_client_proxy.py": 8,
    "contrib_plugins/proxy/tests/test_kernel_proxy_config.py": 8,
    "contrib_plugins/frobs_aggregator/tests/test_frobs_aggregator_kernel.py": 8,
    "tests/openapi/test_validation.py": 7,
    "contrib_plugins/frobs_aggregator/tests/test_frobs_aggregator_unconfigured.py": 7,
    "tests/faults/test_log_flood.py": 7,
    "tests/gateway/test_edge_headers.py": 6,
    "tests/gateway/test_external_access.py": 6,
    "tests/openapi/test_index.py": 6,
    "tests/testing/test_parity.py": 6,
    "tests/dashboard/test_snapshot.py": 6,
    "tests/testing/test_process_mode.py": 6,
    "tests/gateway/test_edge_requestid.py": 6,
    "tests/gateway/test_edge_compression.py": 5,
    "tests/test_layout.py": 5,
}

#: the weight of a test of a file not in ``SECONDS``: rather too much than too little (a new heavy file
#: sent out last would finish alone; a light file sent out early costs nothing)
DEFAULT_SECONDS = 0.5

#: the unit of the tests that must have the machine to itself
ALONE = "alone"
#: tests that must have the machine to itself (each with the reason; an id without ``[...]``: every parameter)
ALONE_TESTS = frozenset(
    {
        # heartbeatTimeout 1 s: a loaded machine's gateway misses it, and the test sees a kill
        "tests/supervisor/test_supervisor.py::test_a_slow_init_is_not_mistaken_for_a_hang",
        # the second scheduler must list the released task before its own loop claims and starts it
        "tests/services/test_scheduler.py::test_stop_cancels_the_run_and_releases_the_claim",
        # a p99 ratio: another test's load in the quiet rounds or the loaded ones skews it
        "tests/isolation/test_cgroups.py::test_a_plugin_burning_cpu_under_its_cap_leaves_the_others_latency",
    }
)


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class FileScheduling(LoadScopeScheduling):
    """``loadfile``, with ``SPLIT`` files test by test, heaviest first, ``ALONE_TESTS`` last and alone."""

    def _split_scope(self, nodeid: str) -> str:
        if nodeid in ALONE_TESTS or nodeid.split("[", 1)[0] in ALONE_TESTS:
            return ALONE
        file = file_of(nodeid)
        return nodeid if file in SPLIT else file

    def _assign_work_unit(self, node: Any) -> None:
        if list(self.workqueue) == [ALONE]:
            # Only the alone tests are left. A worker runs the last test it has only once it gets more
            # work or is told to stop: so every worker but one is told to stop, and the one left gets
            # the alone tests once the others are gone (remove_node asks it again).
            others = [other for other in self.assigned_work if other is not node]
            if others and not all(other.shutting_down for other in others):
                node.shutdown()
                return
            if others:
                return  # the one left: it waits for the others to finish
        super()._assign_work_unit(node)

    def remove_node(self, node: Any) -> str | None:
        crashed = super().remove_node(node)
        if list(self.workqueue) == [ALONE]:
            for other in list(self.assigned_work):
                self._reschedule(other)
        return crashed

    def schedule(self) -> None:
        if self.collection is None and self.registered_collections:  # the first call: the queue is empty
            nodeids = next(iter(self.registered_collections.values()))
            self.workqueue = HeaviestFirst(weights(nodeids))
            self.config.option.loadscopereorder = False  # HeaviestFirst orders
        super().schedule()


def weights(nodeids: list[str]) -> dict[str, float]:
    """Each test's estimated seconds: its file's share of ``SECONDS``, else ``DEFAULT_SECONDS``."""
    per_file: dict[str, int] = defaultdict(int)
    for nodeid in nodeids:
        per_file[file_of(nodeid)] += 1
    return {
        nodeid: SECONDS[file] / per_file[file] if (file := file_of(nodeid)) in SECONDS else DEFAULT_SECONDS
        for nodeid in nodeids
    }


class HeaviestFirst(OrderedDict[str, dict[str, bool]]):
    """loadscope's work queue (unit -> its tests), handing out the heaviest unit left first.

    Workers report tests by their index in their own collection, so the collections themselves are
    never reordered: only which unit goes out next.
    """

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self._weights = weights

    def _weight(self, unit: str) -> float:
        return sum(self._weights.get(nodeid, DEFAULT_SECONDS) for nodeid in self[unit])

    def popitem(self, last: bool = True) -> tuple[str, dict[str, bool]]:
        if last or not self:
            return super().popitem(last)
        others = [unit for unit in self if unit != ALONE] or [ALONE]  # ALONE goes last
        unit = max(others, key=self._weight)  # the first of equals: the collection's order
        return unit, self.pop(unit)
