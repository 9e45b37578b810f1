"""The plugin packages the tests install (as real dist-info + modules on PYTHONPATH).

Each fixture is a module file in ``tests/fixtures/`` (checked by ruff and mypy
like the kernel); ``kernel.testing.make_package`` copies it under the module
name a test chooses. Only a fixture that cannot be a checked file stays a string.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"

ECHO = FIXTURES / "echo.py"
#: a second plugin whose routes are protected (secure by default) except /ping
OTHER = FIXTURES / "other.py"
CRASHY = FIXTURES / "crashy.py"
BAD_ID = FIXTURES / "bad_id.py"
UNKNOWN_DEP = FIXTURES / "needy.py"
#: a plugin with its own readiness check, switched by a route
MOODY = FIXTURES / "moody.py"
#: a package that provides services and routes through the hooks (no plugin of its own)
PROVIDER = FIXTURES / "acme_services.py"
#: a plugin using the overridden cache and the provider's own service
CONSUMER = FIXTURES / "consumer.py"
#: two service providers depending on each other
CYCLE = FIXTURES / "loop_services.py"
#: a plugin that touches config (with reload), discovery and lifecycle from its worker
SERVICED = FIXTURES / "serviced.py"
#: a plugin whose init takes longer than the heartbeat timeout
SLOW_BOOT = FIXTURES / "slow_boot.py"
#: a plugin reading its cache from two replicas (tests/services/test_cache.py)
SHARED_CACHE = FIXTURES / "shared_cache.py"
#: a plugin with scheduled tasks recording their runs (tests/services/test_scheduler.py)
TICKER = FIXTURES / "ticker.py"

#: a package implementing the gateway's and the CLI's hooks (root route, verifier, schema, command)
EDGE = FIXTURES / "acme_edge.py"
#: plugins calling each other with plugin tokens (tests/services/test_auth.py)
CALLER = FIXTURES / "caller.py"
CALLEE = FIXTURES / "callee.py"
#: a plugin asking the ``identity`` service who called, and a package overriding its options (test_identity.py)
IDENTIFIED = FIXTURES / "identified.py"
IDENTITY_OPTIONS = FIXTURES / "identity_options.py"
#: a plugin emitting audit events, and a package shipping them to a file (tests/services/test_auditor.py)
AUDITED = FIXTURES / "audited.py"
AUDIT_SINK = FIXTURES / "audit_sink.py"
#: a package choosing the config loader's arguments in code (tests/config/test_remote.py)
CONFIG_OPTIONS = FIXTURES / "config_options.py"
#: a package serving plugins at /plugins/<pluginId> (tests/gateway/test_plugin_paths.py)
PLUGIN_PATHS = FIXTURES / "plugin_paths_options.py"
#: a package adding a reader of memo:// URLs to the url_reader service (tests/services/test_url_reader.py)
MEMO_READER = FIXTURES / "memo_reader.py"

#: WebSocket routes and auth policies changed at run time (tests/gateway/test_websockets.py)
CHAT = FIXTURES / "chat.py"

#: a plugin with an extension point, and modules of it (good and broken) (tests/worker/test_modules.py)
CATALOG = FIXTURES / "catalog.py"
CATALOG_MODULES = FIXTURES / "catalog_modules.py"

#: the plugin tests/supervisor/test_dev_reload.py edits while it serves
LIVE = FIXTURES / "live.py"
#: plugin ``metered``: its own prometheus counter, the cache, a manual task, a route that fails
METERED = FIXTURES / "metered.py"

#: a plugin whose first starts die (tests/supervisor/test_no_gap.py)
FLAKY = FIXTURES / "flaky.py"

#: a plugin that leaks memory on request (tests/supervisor/test_limits.py)
HUNGRY = FIXTURES / "hungry.py"

#: an OpenAPI document from typed routes and a hand-written part, requests validated (tests/openapi/)
DOCUMENTED = FIXTURES / "documented.py"
#: an API with planted faults the fuzz test must find (tests/fuzz/test_schemathesis.py)
BUGGY_API = FIXTURES / "buggy_api.py"

#: answers the HTTP edge's tests look at: compressible or not, streams, own headers, a logged line
EDGE_ANSWERS = FIXTURES / "edge.py"

# Stays a string: as a file it could not pass mypy (the import it fails on is the point).
IMPORT_ERROR = """
import this_module_does_not_exist
"""

#: plugins whose import exits, hangs, or kills the interpreter (tests/cli/test_plugin_scan.py)
EXITS_AT_IMPORT = FIXTURES / "exits_at_import.py"
HANGS_AT_IMPORT = FIXTURES / "hangs_at_import.py"
CRASHES_AT_IMPORT = FIXTURES / "crashes_at_import.py"
#: a plugin recording which processes import it
MARKS_IMPORT = FIXTURES / "marks_import.py"

#: the fault tests' plugins (tests/faults/): a database user, a cache user
LEDGER = FIXTURES / "ledger.py"
MEMO = FIXTURES / "memo.py"
#: two plugins whose handlers ignore SIGTERM: one swallows cancellation, one blocks its loop
STUBBORN = FIXTURES / "stubborn.py"
#: a plugin that floods its log from a thread
CHATTY = FIXTURES / "chatty.py"

#: a plugin showing what its root_config gives, key by key (tests/config/test_scoping_served.py)
PEEKER = FIXTURES / "peeker.py"
PROBER = FIXTURES / "prober.py"

#: a plugin whose routes each try one attack on the others and report what they got (tests/isolation/)
ATTACKER = FIXTURES / "attacker.py"

#: a plugin whose lifecycle hooks call the kernel it runs in (tests/services/test_lifecycle.py)
FAREWELL = FIXTURES / "farewell.py"
