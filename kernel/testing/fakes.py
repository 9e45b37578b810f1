"""Working stand-ins for the core services that need one in tests (``mock_services.X()`` builds them).

- ``MockRootConfig``: the config from a dict; ``await update(data)`` reaches ``subscribe`` callbacks;
- ``MockAuth``, ``MockHttpAuth``, ``MockUserInfo``: the token services over mock tokens
  (``kernel.testing.credentials``), as Backstage's ``MockAuthService``/``MockHttpAuthService``;
- ``MockIdentity``: the deprecated ``identity`` service over mock user tokens;
- ``MockPermissions``: one answer, ``ALLOW`` or ``DENY``, for every request;
- ``MockScheduler``: remembers tasks and runs them only when a test says so (``await trigger(id)``).

Each has ``factory()``: a ``ServiceFactory`` providing that very instance (for ``start_test_backend``).
The other services' stand-ins are the real implementations (``services/``) on test settings.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from kernel.api import (
    ALLOWED,
    DENIED,
    NO_PRINCIPAL,
    AuthenticationError,
    AuthorizeRequest,
    AuthorizeResult,
    BackstageIdentityResponse,
    BackstageUserIdentity,
    ConflictError,
    Credentials,
    DefinitiveDecision,
    InputError,
    NotAllowedError,
    NotFoundError,
    PolicyDecision,
    Principal,
    PrincipalType,
    QueryRequest,
    ServiceFactory,
    ServiceRef,
    UserInfoResult,
    core_services,
    presented_token,
    principal_of,
)
from kernel.config import Config, LiveConfig
from kernel.testing.credentials import (
    MOCK_USER_LIMITED_TOKEN_PREFIX,
    MOCK_USER_TOKEN,
    MOCK_USER_TOKEN_PREFIX,
    is_mock_token,
    mock_credentials,
    verify_mock_token,
)

__all__ = [
    "MockAuth",
    "MockHttpAuth",
    "MockIdentity",
    "MockPermissions",
    "MockRootConfig",
    "MockScheduler",
    "MockUserInfo",
    "ScheduledTask",
    "instance_factory",
]

#: the provider the toolkit's factories name (in a ``BootError`` naming who provides a service)
TOOLKIT = "kernel-testing"
COOKIE_SECONDS = 3600.0


def instance_factory(ref: ServiceRef[Any], instance: Any) -> ServiceFactory:
    """A factory providing ``instance`` as ``ref`` (to every plugin of the backend)."""
    return ServiceFactory(ref, lambda: instance, provider=TOOLKIT)


class MockRootConfig(LiveConfig):
    """``core.rootConfig`` from a dict (Backstage's ``mockServices.rootConfig({data})``)."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(Config.from_dict(dict(data or {}), "mock-config"))

    async def update(self, data: Mapping[str, Any]) -> None:
        """Replace the config, as a reload would: ``subscribe`` callbacks run before this returns."""
        await self.replace(Config.from_dict(dict(data), "mock-config"))

    def factory(self) -> ServiceFactory:
        return instance_factory(core_services.root_config, self)


class MockAuth:
    """A ``kernel.api.Auth`` of plugin ``plugin_id`` that knows mock tokens only."""

    def __init__(self, plugin_id: str = "test") -> None:
        self.plugin_id = plugin_id

    async def authenticate(self, token: str, *, allow_limited_access: bool = False) -> Credentials:
        verified = verify_mock_token(token) if token else None
        if verified is None:
            raise AuthenticationError(f"Unknown mock token {token[:60]!r}" if token else "Token is empty")
        if verified.audience is not None and verified.audience != self.plugin_id:
            raise AuthenticationError(
                f"Invalid mock token target plugin ID, got '{verified.audience}' but expected '{self.plugin_id}'"
            )
        if verified.limited and not allow_limited_access:
            raise AuthenticationError("Limited user token is not allowed")
        return Credentials(verified.principal, verified.expires_at, token)

    def is_principal(self, credentials: Credentials, type: PrincipalType) -> bool:
        return type == "unknown" or credentials.principal.type == type

    async def get_none_credentials(self) -> Credentials:
        return Credentials(NO_PRINCIPAL)

    async def get_own_service_credentials(self) -> Credentials:
        return Credentials(Principal("service", f"plugin:{self.plugin_id}"))

    async def get_plugin_request_token(self, *, on_behalf_of: Credentials, target_plugin_id: str) -> str:
        """A mock plugin token for ``target_plugin_id``: as this plugin, or carrying the user (``obo``)."""
        principal = on_behalf_of.principal
        own = f"plugin:{self.plugin_id}"
        if principal.type == "user":
            user = mock_credentials.user(principal.subject)
            return mock_credentials.service(own, target_plugin_id=target_plugin_id, on_behalf_of=user).token()
        if principal.type == "service":
            return mock_credentials.service(own, target_plugin_id=target_plugin_id).token()
        raise AuthenticationError(f"Refused to issue service token for credential type '{principal.type}'")

    async def get_limited_user_token(self, credentials: Credentials) -> tuple[str, float]:
        if credentials.principal.type != "user":
            raise InputError("A limited user token needs user credentials")
        return mock_credentials.limited_user(credentials.principal.subject).token(), time.time() + COOKIE_SECONDS

    async def list_public_service_keys(self) -> list[dict[str, Any]]:
        return []

    def factory(self) -> ServiceFactory:
        return instance_factory(core_services.auth, self)


class MockHttpAuth:
    """A ``kernel.api.HttpAuth``: the principal the gateway verified, checked against what a route allows."""

    def __init__(self, plugin_id: str = "test") -> None:
        self._auth = MockAuth(plugin_id)

    async def credentials(
        self, request: Any, *, allow: Sequence[PrincipalType] | None = None, allow_limited_access: bool = False
    ) -> Credentials:
        principal = principal_of(request)
        token = presented_token(request.scope["headers"], allow_limited_access) or ""
        if token.startswith(MOCK_USER_LIMITED_TOKEN_PREFIX) and not allow_limited_access:
            raise AuthenticationError("Limited user token is not allowed")
        credentials = Credentials(principal, None, token if is_mock_token(token) else "")
        if allow is None or principal.type in allow:
            return credentials
        if principal.type == "none":
            raise AuthenticationError("Missing credentials")
        raise NotAllowedError(f"This endpoint does not allow '{principal.type}' credentials")

    async def issue_user_cookie(self, response: Any, *, credentials: Credentials | None = None) -> float:
        """Set the user cookie (a mock limited token) on a Starlette ``response``; returns when it expires."""
        if credentials is None or credentials.principal.type != "user":
            raise AuthenticationError("A user cookie needs user credentials")
        token, expires_at = await self._auth.get_limited_user_token(credentials)
        response.set_cookie("backstage-auth", token, expires=int(expires_at), path="/", httponly=True)
        return expires_at

    def factory(self) -> ServiceFactory:
        return instance_factory(core_services.http_auth, self)


class MockUserInfo:
    """A ``kernel.api.UserInfo``: the user's ref and ``[ref]`` (or its token's ownership refs, or ``custom``)."""

    def __init__(self, user_entity_ref: str | None = None, ownership_entity_refs: Sequence[str] | None = None) -> None:
        self._ref = user_entity_ref
        self._owned = None if ownership_entity_refs is None else list(ownership_entity_refs)

    async def get_user_info(self, credentials: Credentials) -> UserInfoResult:
        principal = credentials.principal
        if principal.type != "user":
            raise InputError(f"User info needs user credentials, not {principal.type} credentials")
        ref = self._ref or principal.subject
        owned = self._owned if self._owned is not None else (list(principal.ownership_refs) or [ref])
        return UserInfoResult(ref, owned)

    def factory(self) -> ServiceFactory:
        return instance_factory(core_services.user_info, self)


class MockIdentity:
    """A ``kernel.api.IdentityService`` over mock tokens: a mock user token's user; any other token is 401."""

    async def get_identity(self, request: Any) -> BackstageIdentityResponse | None:
        scope = getattr(request, "scope", request)
        if not any(name == b"authorization" for name, _ in scope["headers"]):
            return None
        token = presented_token(scope["headers"], False) or ""
        if not (token == MOCK_USER_TOKEN or token.startswith(MOCK_USER_TOKEN_PREFIX)):
            raise AuthenticationError("Not a user token" if token else "No token specified")
        verified = verify_mock_token(token)
        assert verified is not None  # a mock user token
        principal = verified.principal
        refs = list(principal.ownership_refs) or [principal.subject]
        return BackstageIdentityResponse(BackstageUserIdentity(principal.subject, refs), token)

    def factory(self) -> ServiceFactory:
        return instance_factory(core_services.identity, self)


Result = Literal["ALLOW", "DENY"] | AuthorizeResult


class MockPermissions:
    """A ``kernel.api.PermissionsService`` answering ``result`` to everything (Backstage's ``MockPermissionsService``)."""

    def __init__(self, result: Result = "ALLOW") -> None:
        if result not in ("ALLOW", "DENY"):
            raise ValueError(f"result must be 'ALLOW' or 'DENY', not {result!r}")
        self._decision: DefinitiveDecision = ALLOWED if result == "ALLOW" else DENIED

    async def authorize(
        self, requests: Sequence[AuthorizeRequest], *, credentials: Credentials
    ) -> list[DefinitiveDecision]:
        return [self._decision for _ in requests]

    async def authorize_conditional(
        self, requests: Sequence[QueryRequest], *, credentials: Credentials
    ) -> list[PolicyDecision]:
        return [self._decision for _ in requests]

    def factory(self) -> ServiceFactory:
        return instance_factory(core_services.permissions, self)


@dataclass
class ScheduledTask:
    """A task as the mock scheduler keeps it: its settings, and what its runs did."""

    id: str
    fn: Callable[[], Awaitable[None]]
    frequency: str | float | timedelta
    timeout: float
    initial_delay: float
    scope: Literal["global", "local"]
    runs: int = 0
    running: bool = False
    last_error: BaseException | None = None


class MockScheduler:
    """A ``kernel.api.Scheduler`` whose tasks run only on demand: ``await scheduler.trigger(id)``.

    One instance serves every plugin of a test backend (``services=[scheduler.factory()]``), so the
    test holds it. ``trigger`` raises what the task raised; ``trigger_task`` (what plugin code calls)
    records the error instead, as the real scheduler logs it. ``factory(run_on_startup=True)`` runs
    every task that is neither ``"manual"`` nor delayed once the plugins have started, as Backstage's does.
    """

    def __init__(self) -> None:
        self.tasks: dict[str, ScheduledTask] = {}

    async def schedule_task(
        self,
        id: str,
        fn: Callable[[], Awaitable[None]],
        *,
        frequency: str | float | timedelta,
        timeout: float,
        initial_delay: float = 0.0,
        scope: Literal["global", "local"] = "global",
    ) -> None:
        if id in self.tasks:
            raise ConflictError(f"task {id!r} is already scheduled")
        self.tasks[id] = ScheduledTask(id, fn, frequency, timeout, initial_delay, scope)

    async def trigger(self, id: str) -> None:
        """Run task ``id`` now and wait for it; its exception, or ``TimeoutError`` past its timeout, is raised."""
        task = self.tasks.get(id)
        if task is None:
            raise NotFoundError(f"no task {id!r} (scheduled: {sorted(self.tasks)})")
        if task.running:
            raise ConflictError(f"task {id!r} is already running")
        task.running = True
        task.runs += 1
        try:
            result = task.fn()
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, task.timeout)
            task.last_error = None
        except Exception as exc:
            task.last_error = exc
            raise
        finally:
            task.running = False

    async def trigger_task(self, id: str) -> None:
        try:
            await self.trigger(id)
        except (NotFoundError, ConflictError):
            raise
        except Exception:
            pass  # kept in ``last_error``, as the real scheduler logs it

    async def trigger_all(
        self, *, include_manual: bool = False, include_delayed: bool = False, only_new: bool = False
    ) -> None:
        """Run every task once (``"manual"`` ones, delayed ones, those that ran already: only if asked)."""
        for task in list(self.tasks.values()):
            if task.frequency == "manual" and not include_manual:
                continue
            if (task.initial_delay and not include_delayed) or (only_new and task.runs):
                continue
            await self.trigger_task(task.id)

    async def list_tasks(self) -> list[dict[str, Any]]:
        return [
            {
                "taskId": t.id,
                "scope": t.scope,
                "settings": {"frequency": str(t.frequency), "timeout": t.timeout, "initialDelay": t.initial_delay},
                "taskState": {"status": "running" if t.running else "idle", "runs": t.runs},
            }
            for t in self.tasks.values()
        ]

    def factory(self, *, run_on_startup: bool = False) -> ServiceFactory:
        if not run_on_startup:
            return instance_factory(core_services.scheduler, self)

        def make(lifecycle: Any) -> MockScheduler:
            async def run_new() -> None:  # each plugin's start-up runs the tasks not run yet
                await self.trigger_all(only_new=True)

            lifecycle.add_startup_hook(run_new, label="run the scheduled tasks once")
            return self

        return ServiceFactory(core_services.scheduler, make, {"lifecycle": core_services.lifecycle}, TOOLKIT)
