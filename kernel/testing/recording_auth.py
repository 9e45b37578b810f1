"""Recording mocks of the token, permission, scheduler and plugin-client services (see ``recording``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from kernel.api import (
    Auth,
    AuthorizeRequest,
    BackstageIdentityResponse,
    Credentials,
    DefinitiveDecision,
    HttpAuth,
    IdentityService,
    PermissionsService,
    PluginClient,
    PluginResponse,
    PolicyDecision,
    PrincipalType,
    QueryRequest,
    Scheduler,
    ServiceUnavailableError,
    UserInfo,
    UserInfoResult,
    core_services,
)
from kernel.testing.fakes import MockScheduler
from kernel.testing.recording import Recorder

__all__ = [
    "AuthMock",
    "HttpAuthMock",
    "IdentityMock",
    "PermissionsMock",
    "PluginClientMock",
    "SchedulerMock",
    "UserInfoMock",
]


class AuthMock(Recorder):
    """``mock_services.auth.mock()``: mock tokens (``MockAuth``), calls recorded."""

    ref = core_services.auth

    def __init__(self, fake: Auth, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    async def authenticate(self, token: str, *, allow_limited_access: bool = False) -> Credentials:
        result: Credentials = await self._async(
            "authenticate", self._fake.authenticate, token, allow_limited_access=allow_limited_access
        )
        return result

    def is_principal(self, credentials: Credentials, type: PrincipalType) -> bool:
        return bool(self._sync("is_principal", self._fake.is_principal, credentials, type))

    async def get_none_credentials(self) -> Credentials:
        result: Credentials = await self._async("get_none_credentials", self._fake.get_none_credentials)
        return result

    async def get_own_service_credentials(self) -> Credentials:
        result: Credentials = await self._async("get_own_service_credentials", self._fake.get_own_service_credentials)
        return result

    async def get_plugin_request_token(self, *, on_behalf_of: Credentials, target_plugin_id: str) -> str:
        return str(
            await self._async(
                "get_plugin_request_token",
                self._fake.get_plugin_request_token,
                on_behalf_of=on_behalf_of,
                target_plugin_id=target_plugin_id,
            )
        )

    async def get_limited_user_token(self, credentials: Credentials) -> tuple[str, float]:
        result: tuple[str, float] = await self._async(
            "get_limited_user_token", self._fake.get_limited_user_token, credentials
        )
        return result

    async def list_public_service_keys(self) -> list[dict[str, Any]]:
        return list(await self._async("list_public_service_keys", self._fake.list_public_service_keys))


class HttpAuthMock(Recorder):
    """``mock_services.http_auth.mock()``: the gateway's principal (``MockHttpAuth``), calls recorded."""

    ref = core_services.http_auth

    def __init__(self, fake: HttpAuth, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    async def credentials(
        self, request: Any, *, allow: Sequence[PrincipalType] | None = None, allow_limited_access: bool = False
    ) -> Credentials:
        result: Credentials = await self._async(
            "credentials", self._fake.credentials, request, allow=allow, allow_limited_access=allow_limited_access
        )
        return result

    async def issue_user_cookie(self, response: Any, *, credentials: Credentials | None = None) -> float:
        return float(
            await self._async("issue_user_cookie", self._fake.issue_user_cookie, response, credentials=credentials)
        )


class IdentityMock(Recorder):
    """``mock_services.identity.mock()``."""

    ref = core_services.identity

    def __init__(self, fake: IdentityService, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    async def get_identity(self, request: Any) -> BackstageIdentityResponse | None:
        result: BackstageIdentityResponse | None = await self._async("get_identity", self._fake.get_identity, request)
        return result


class UserInfoMock(Recorder):
    """``mock_services.user_info.mock()``."""

    ref = core_services.user_info

    def __init__(self, fake: UserInfo, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    async def get_user_info(self, credentials: Credentials) -> UserInfoResult:
        result: UserInfoResult = await self._async("get_user_info", self._fake.get_user_info, credentials)
        return result


class PermissionsMock(Recorder):
    """``mock_services.permissions.mock(result=...)``: one answer for everything, requests recorded."""

    ref = core_services.permissions

    def __init__(self, fake: PermissionsService, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake

    async def authorize(
        self, requests: Sequence[AuthorizeRequest], *, credentials: Credentials
    ) -> list[DefinitiveDecision]:
        return list(await self._async("authorize", self._fake.authorize, requests, credentials=credentials))

    async def authorize_conditional(
        self, requests: Sequence[QueryRequest], *, credentials: Credentials
    ) -> list[PolicyDecision]:
        return list(
            await self._async(
                "authorize_conditional", self._fake.authorize_conditional, requests, credentials=credentials
            )
        )


class SchedulerMock(Recorder):
    """``mock_services.scheduler.mock()``: a ``MockScheduler`` (run on demand) whose calls are recorded."""

    ref = core_services.scheduler

    def __init__(self, fake: MockScheduler, **overrides: Any) -> None:
        super().__init__(overrides)
        self._fake = fake
        self.tasks = fake.tasks

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
        await self._async(
            "schedule_task",
            self._fake.schedule_task,
            id,
            fn,
            frequency=frequency,
            timeout=timeout,
            initial_delay=initial_delay,
            scope=scope,
        )

    async def trigger_task(self, id: str) -> None:
        await self._async("trigger_task", self._fake.trigger_task, id)

    async def list_tasks(self) -> list[dict[str, Any]]:
        return list(await self._async("list_tasks", self._fake.list_tasks))

    async def trigger(self, id: str) -> None:
        """Run task ``id`` now (the test's trigger; see ``MockScheduler.trigger``)."""
        await self._async("trigger", self._fake.trigger, id)


async def _no_client(target_plugin_id: str, method: str, path: str, **kwargs: Any) -> PluginResponse:
    raise ServiceUnavailableError(
        f"plugin_client mock: no answer for {method} {path} of plugin '{target_plugin_id}' "
        "(give one: mock_services.plugin_client.mock(request=...))"
    )


class PluginClientMock(Recorder):
    """``mock_services.plugin_client.mock(request=...)``: calls to other plugins, recorded and answered by the test."""

    ref = core_services.plugin_client

    def __init__(self, **overrides: Any) -> None:
        super().__init__(overrides)

    async def request(
        self,
        target_plugin_id: str,
        method: str,
        path: str,
        *,
        on_behalf_of: Credentials | None = None,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> PluginResponse:
        result: PluginResponse = await self._async(
            "request",
            _no_client,
            target_plugin_id,
            method,
            path,
            on_behalf_of=on_behalf_of,
            json=json,
            content=content,
            params=params,
            headers=headers,
            timeout=timeout,
        )
        return result


if TYPE_CHECKING:  # mypy checks each mock against its protocol

    def _auth(m: AuthMock) -> Auth:
        return m

    def _http_auth(m: HttpAuthMock) -> HttpAuth:
        return m

    def _user_info(m: UserInfoMock) -> UserInfo:
        return m

    def _permissions(m: PermissionsMock) -> PermissionsService:
        return m

    def _scheduler(m: SchedulerMock) -> Scheduler:
        return m

    def _plugin_client(m: PluginClientMock) -> PluginClient:
        return m
