"""The rollout endpoints: ask for one (``POST``), follow one or all (``GET``); operators only.

``POST /.kernel/rollout/v1/rollouts`` takes a JSON object naming exactly one of:

- ``{"plugins": ["catalog", ...]}``: those plugins' workers, one plugin after the other;
- ``{"allPlugins": true}``: every running plugin's workers, one plugin after the other;
- ``{"gateways": true}``: the gateway processes, one at a time.

It answers ``202`` with ``{"rollout": {...}}`` and a ``Location`` to follow it at; ``404`` for a plugin
this kernel does not run; ``409`` when the supervisor refuses (another rollout runs, or the kernel
stops), saying why. ``GET .../rollouts/{id}`` answers ``{"rollout": {...}}``; ``GET .../rollouts``
``{"rollouts": [...]}``, newest first (the supervisor keeps the last 20). A rollout is
``{"id", "state", "plugins", "gateways", "requestedAt", "finishedAt", "error", "steps": [{"at",
"message"}]}``; ``state`` is ``running``, ``succeeded``, ``failed`` (``error`` says why) or
``refused``; times are Unix seconds.

Every endpoint needs credentials (401 without) of an operator: a principal that
``backend.dashboard.operators`` lists, read from the live config on each request (403 for anyone else).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from kernel.core_services import RootConfig
from kernel.dashboard.routes import require_operator
from kernel.errors import ConflictError, InputError, NotFoundError
from kernel.hooktypes import GatewayView
from kernel.protocol import RolloutState
from kernel.rollout.paths import ROLLOUTS
from kernel.settings import read_dashboard_settings

WHAT = "the rollouts"
NO_STORE = {"cache-control": "no-store"}


def rollout_json(state: RolloutState) -> dict[str, Any]:
    """One rollout as the endpoints (and ``kernel rollout``) show it."""
    return {
        "id": state.id,
        "state": state.state,
        "plugins": list(state.plugins),
        "gateways": state.gateways,
        "requestedAt": state.requested_at,
        "finishedAt": state.finished_at or None,
        "error": state.error or None,
        "steps": [{"at": s.at, "message": s.message} for s in state.steps],
    }


async def _target(request: Request, running: set[str]) -> tuple[list[str] | None, bool]:
    """What the body names: (plugin ids, ``None`` for every plugin; whether the gateways)."""
    try:
        body = await request.json()
    except ValueError:
        raise InputError("The body must be a JSON object naming plugins, allPlugins or gateways") from None
    if not isinstance(body, dict):
        raise InputError("The body must be a JSON object naming plugins, allPlugins or gateways")
    named = [k for k in ("plugins", "allPlugins", "gateways") if body.get(k) not in (None, False, [])]
    unknown_keys = sorted(set(body) - {"plugins", "allPlugins", "gateways"})
    if unknown_keys:
        raise InputError(f"Unknown field(s) {', '.join(unknown_keys)}: name plugins, allPlugins or gateways")
    if len(named) != 1:
        raise InputError("Name exactly one of plugins (a list of plugin ids), allPlugins: true or gateways: true")
    if named[0] == "gateways":
        if body["gateways"] is not True:
            raise InputError("gateways must be true")
        return [], True
    if named[0] == "allPlugins":
        if body["allPlugins"] is not True:
            raise InputError("allPlugins must be true")
        return None, False
    plugins = body["plugins"]
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise InputError("plugins must be a list of plugin ids")
    for plugin_id in plugins:
        if plugin_id not in running:
            raise NotFoundError(f"No plugin with id '{plugin_id}'")
    return list(dict.fromkeys(plugins)), False


def rollout_routes(gateway: GatewayView, config: RootConfig) -> list[BaseRoute]:
    async def operator(request: Request) -> str:
        principal = await require_operator(gateway, request.scope["headers"], read_dashboard_settings(config), WHAT)
        return principal.subject

    async def start(request: Request) -> JSONResponse:
        who = await operator(request)
        running = {p.id for p in gateway.plugin_states()}
        plugins, gateways = await _target(request, running)
        state = await gateway.request_rollout(plugins, gateways, who)
        if state.state == "refused":
            raise ConflictError(f"Rollout refused: {state.error}")
        headers = {**NO_STORE, "location": f"{ROLLOUTS}/{state.id}"}
        return JSONResponse({"rollout": rollout_json(state)}, status_code=202, headers=headers)

    async def listed(request: Request) -> JSONResponse:
        await operator(request)
        return JSONResponse({"rollouts": [rollout_json(s) for s in gateway.rollouts()]}, headers=NO_STORE)

    async def one(request: Request) -> JSONResponse:
        await operator(request)
        rollout_id = request.path_params["id"]
        state = next((s for s in gateway.rollouts() if s.id == rollout_id), None)
        if state is None:
            raise NotFoundError(f"No rollout with id '{rollout_id}' (the kernel keeps the last 20)")
        return JSONResponse({"rollout": rollout_json(state)}, headers=NO_STORE)

    return [
        Route(ROLLOUTS, start, methods=["POST"]),
        Route(ROLLOUTS, listed, methods=["GET"]),
        Route(ROLLOUTS + "/{id}", one, methods=["GET"]),
    ]
