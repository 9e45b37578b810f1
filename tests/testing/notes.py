"""The ``notes`` plugin the toolkit's tests run: every core service a plugin author meets, behind routes.

Not installed: ``start_test_backend`` takes the object in-process, and installs it for one kernel in
process mode (``tests.testing.notes:plugin`` is importable from the repository root).

- ``/whoami`` (protected), ``/public/whoami`` (``unauthenticated``), ``/cookie/whoami`` (``user-cookie``):
  the principal the gateway verified, as JSON;
- ``/users-only``: ``http_auth.credentials(allow=["user"])`` and ``user_info``;
- ``POST /notes`` ``{"body"}``: permission ``notes.note.create``, then the note in the database;
  ``GET /notes``: the caller's notes, cached per owner;
- ``/greeting``: ``notes.greeting`` of the config (following reloads);
- ``/boom`` (``InputError``), ``/crash`` (a plain exception), ``POST /open-later`` (opens ``/later``);
- task ``notes-cleanup`` (hourly) deletes every note.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from kernel.api import (
    CacheService,
    DatabaseService,
    HttpAuth,
    HttpRouter,
    InputError,
    Logger,
    NotAllowedError,
    PermissionsRegistryService,
    PermissionsService,
    RootConfig,
    Scheduler,
    UserInfo,
    core_services,
    create_permission,
    create_plugin,
    principal_of,
)

plugin = create_plugin("notes")
NOTE_CREATE = create_permission("notes.note.create", {"action": "create"})
MIGRATIONS = [("001_notes", "CREATE TABLE notes (id TEXT PRIMARY KEY, owner TEXT NOT NULL, body TEXT NOT NULL)")]


def _principal(request: Request) -> dict[str, Any]:
    p = principal_of(request)
    return {
        "type": p.type,
        "subject": p.subject,
        "ownership_refs": p.ownership_refs,
        "access_restrictions": p.access_restrictions,
        "actor": p.actor,
    }


@plugin.init(
    router=core_services.http_router,
    logger=core_services.logger,
    config=core_services.root_config,
    database=core_services.database,
    cache=core_services.cache,
    scheduler=core_services.scheduler,
    permissions=core_services.permissions,
    registry=core_services.permissions_registry,
    http_auth=core_services.http_auth,
    user_info=core_services.user_info,
)
async def init(
    router: HttpRouter,
    logger: Logger,
    config: RootConfig,
    database: DatabaseService,
    cache: CacheService,
    scheduler: Scheduler,
    permissions: PermissionsService,
    registry: PermissionsRegistryService,
    http_auth: HttpAuth,
    user_info: UserInfo,
) -> None:
    await database.migrate(MIGRATIONS)
    registry.add_permissions([NOTE_CREATE])
    greeting = {"text": config.get_optional_string("notes.greeting") or "hello"}

    def reloaded(new: Any) -> None:
        greeting["text"] = new.get_optional_string("notes.greeting") or "hello"

    config.subscribe(reloaded)

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse(_principal(request))

    async def cookie_whoami(request: Request) -> JSONResponse:
        credentials = await http_auth.credentials(request, allow=["user"], allow_limited_access=True)
        return JSONResponse({**_principal(request), "credentials": credentials.principal.subject})

    async def users_only(request: Request) -> JSONResponse:
        credentials = await http_auth.credentials(request, allow=["user"])
        info = await user_info.get_user_info(credentials)
        return JSONResponse({"user": info.user_entity_ref, "owns": info.ownership_entity_refs})

    async def create_note(request: Request) -> JSONResponse:
        credentials = await http_auth.credentials(request, allow=["user"])
        decision = (await permissions.authorize([{"permission": NOTE_CREATE}], credentials=credentials))[0]
        if not decision.allowed:
            raise NotAllowedError(f"Not allowed to create notes ({NOTE_CREATE.name})")
        body = (await request.json()).get("body")
        if not isinstance(body, str) or not body:
            raise InputError("A note needs a non-empty 'body'")
        owner = credentials.principal.subject
        db = await database.get_client()
        await db.execute("INSERT INTO notes (id, owner, body) VALUES ($1, $2, $3)", uuid.uuid4().hex, owner, body)
        await cache.delete(f"notes:{owner}")
        logger.info("note created", owner=owner)
        return JSONResponse({"owner": owner, "body": body}, status_code=201)

    async def list_notes(request: Request) -> JSONResponse:
        owner = (await http_auth.credentials(request, allow=["user"])).principal.subject
        notes = await cache.get(f"notes:{owner}")
        if notes is None:
            db = await database.get_client()
            rows = await db.fetch_all("SELECT body FROM notes WHERE owner = $1 ORDER BY body", owner)
            notes = [r["body"] for r in rows]
            await cache.set(f"notes:{owner}", notes)
        return JSONResponse({"notes": notes})

    async def show_greeting(request: Request) -> JSONResponse:
        return JSONResponse({"greeting": greeting["text"]})

    async def boom(request: Request) -> JSONResponse:
        raise InputError("That is not a note")

    async def crash(request: Request) -> JSONResponse:
        raise RuntimeError("a secret detail")

    async def open_later(request: Request) -> JSONResponse:
        router.add_auth_policy("/later", allow="unauthenticated")
        return JSONResponse({"opened": "/later"})

    async def cleanup() -> None:
        db = await database.get_client()
        await db.execute("DELETE FROM notes")
        logger.info("notes cleaned up")

    await scheduler.schedule_task("notes-cleanup", cleanup, frequency=3600, timeout=10)

    router.add_route("/whoami", whoami)
    router.add_route("/public/whoami", whoami)
    router.add_route("/cookie/whoami", cookie_whoami)
    router.add_route("/users-only", users_only)
    router.add_route("/notes", create_note, methods=["POST"])
    router.add_route("/notes", list_notes, methods=["GET"])
    router.add_route("/greeting", show_greeting)
    router.add_route("/boom", boom)
    router.add_route("/crash", crash)
    router.add_route("/open-later", open_later, methods=["POST"])
    router.add_route("/later", whoami)
    router.add_auth_policy("/public", allow="unauthenticated")
    router.add_auth_policy("/cookie", allow="user-cookie")
    logger.info("notes ready")
