"""The ``auditor`` service: audit events of a plugin as structured log lines, and to the ``kernel_audit_event`` hook.

As the reference system's ``DefaultAuditorService``: ``create_event`` logs the event as
``initiated``; ``success()`` or ``fail(error=...)`` logs it again as ``succeeded`` or ``failed``,
its ``meta`` merged. The actor is the caller of the request (a user's entity ref, a service's
subject), or this plugin (``plugin:<id>``) for an event outside a request. Each line goes to the
plugin's logger with the field ``isAuditEvent: true``, message ``<pluginId>.<eventId>``, the
event's fields beside it, at the level ``backend.auditor.severityLogLevelMappings`` gives its
severity (``low`` debug, the others info, by default). Then every installed package's
``kernel_audit_event`` receives it; a package that fails is logged, and the plugin goes on.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import msgspec

from kernel.api import (
    AuditorEvent,
    AuditorEventSeverityLevel,
    Auth,
    HookCaller,
    HttpAuth,
    InputError,
    Logger,
    PluginMetadata,
    RootConfig,
    ServiceFactory,
    core_services,
    create_service_factory,
    read_section,
)

__all__ = ["AuditorSettings", "DefaultAuditorService", "SeverityLogLevelMappings"]

LogLevel = Literal["debug", "info", "warn", "error"]
SEVERITIES = ("low", "medium", "high", "critical")


class SeverityLogLevelMappings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    low: LogLevel = "debug"
    medium: LogLevel = "info"
    high: LogLevel = "info"
    critical: LogLevel = "info"


class AuditorSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    """``backend.auditor``: the log level of each severity."""

    severity_log_level_mappings: SeverityLogLevelMappings = SeverityLogLevelMappings()


def read_auditor_settings(config: RootConfig) -> AuditorSettings:
    return read_section(config, "backend.auditor", AuditorSettings)


def _request_of(request: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The event's ``request`` (url, method) and the actor's network facts, from a Starlette request."""
    scope = request.scope
    root, url = scope.get("root_path", ""), scope["path"]
    if not url.startswith(root):  # an ASGI server whose path is below the root path
        url = root + url
    query = scope.get("query_string", b"")
    if query:
        url += "?" + query.decode("latin-1")
    actor: dict[str, str] = {}
    client = scope.get("client")
    if client:
        actor["ip"] = str(client[0])
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())}
    host = headers.get("host", "")
    host = host if host.endswith("]") else host.rsplit(":", 1)[0]  # no port; an IPv6 literal kept whole
    if host:
        actor["hostname"] = host
    if "user-agent" in headers:
        actor["userAgent"] = headers["user-agent"]
    return {"url": url, "method": str(scope.get("method", ""))}, actor


class _Event:
    """An ``AuditorServiceEvent``: the initiated event, to log again as it ends."""

    def __init__(self, auditor: DefaultAuditorService, event: AuditorEvent) -> None:
        self._auditor = auditor
        self._event = event

    def _merged(self, meta: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        return {**(self._event.meta or {}), **(meta or {})} or None

    async def success(self, *, meta: Mapping[str, Any] | None = None) -> None:
        await self._auditor.emit(replace(self._event, status="succeeded", meta=self._merged(meta)))

    async def fail(
        self,
        *,
        error: BaseException | str | None = None,
        errors: Sequence[BaseException | str] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        every = [*([error] if error is not None else []), *errors]
        if not every:
            raise InputError("An audit event fails with an 'error' (or 'errors')")
        texts = [str(e) if isinstance(e, str) else f"{type(e).__name__}: {e}" for e in every]
        await self._auditor.emit(replace(self._event, status="failed", meta=self._merged(meta), errors=texts))


class DefaultAuditorService:
    """A ``kernel.api.AuditorService`` of plugin ``plugin_id``: see the module doc."""

    def __init__(
        self,
        plugin_id: str,
        logger: Logger,
        auth: Auth,
        http_auth: HttpAuth,
        hooks: HookCaller | None = None,
        settings: AuditorSettings | None = None,
    ) -> None:
        self._plugin_id = plugin_id
        self._logger = logger.child(isAuditEvent=True)
        self._errors = logger
        self._auth = auth
        self._http_auth = http_auth
        self._hooks = hooks
        self._levels = (settings or AuditorSettings()).severity_log_level_mappings

    async def create_event(
        self,
        event_id: str,
        *,
        severity_level: AuditorEventSeverityLevel = "low",
        request: Any = None,
        meta: Mapping[str, Any] | None = None,
    ) -> _Event:
        if severity_level not in SEVERITIES:
            raise InputError(f"Audit event '{event_id}': severity_level must be one of {', '.join(SEVERITIES)}")
        actor: dict[str, str] = {}
        request_fields = None
        if request is not None:
            credentials = await self._http_auth.credentials(request)
            request_fields, actor = _request_of(request)
        else:
            credentials = await self._auth.get_own_service_credentials()
        if credentials.principal.type in ("user", "service"):
            actor = {"actorId": credentials.principal.subject, **actor}
        event = AuditorEvent(
            self._plugin_id, event_id, severity_level, "initiated", actor, request_fields, dict(meta or {}) or None
        )
        await self.emit(event)
        return _Event(self, event)

    async def emit(self, event: AuditorEvent) -> None:
        """Log ``event`` and hand it to every package's ``kernel_audit_event``."""
        body = event.to_json()
        level = getattr(self._levels, event.severity_level)
        log = {"debug": self._logger.debug, "info": self._logger.info, "warn": self._logger.warning}.get(
            level, self._logger.error
        )
        log(f"{event.plugin}.{event.event_id}", **{k: v for k, v in body.items() if k != "plugin"})
        if self._hooks is None:
            return
        try:
            for result in self._hooks.call("kernel_audit_event", event=event):
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:  # a package's shipping fails: the event is logged, the plugin goes on
            self._errors.error(
                f"An audit event could not be shipped by kernel_audit_event: {type(exc).__name__}: {exc}",
                eventId=event.event_id,
            )


@create_service_factory(
    core_services.auditor,
    {
        "meta": core_services.plugin_metadata,
        "config": core_services.root_config,
        "logger": core_services.logger,
        "auth": core_services.auth,
        "http_auth": core_services.http_auth,
        "hooks": core_services.root_hooks,
    },
)
def _auditor(
    meta: PluginMetadata, config: RootConfig, logger: Logger, auth: Auth, http_auth: HttpAuth, hooks: HookCaller
) -> DefaultAuditorService:
    return DefaultAuditorService(meta.plugin_id, logger, auth, http_auth, hooks, read_auditor_settings(config))


FACTORIES: list[ServiceFactory] = [_auditor]
