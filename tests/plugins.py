"""Source of the plugin packages the tests install (as real dist-info + modules on PYTHONPATH)."""

ECHO = """
import asyncio, base64, hashlib, os
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from kernel.api import InputError, core_services, create_plugin, principal_of

plugin = create_plugin("echo")
stats = {"chunks_streamed": 0}


@plugin.init(router=core_services.http_router)
async def init(router):
    async def echo(request: Request):
        body = await request.body()
        return JSONResponse({
            "method": request.method,
            "path": request.url.path,
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
            "body": base64.b64encode(body).decode(),
            "principal": principal_of(request).subject,
        })

    async def pid(request):
        return JSONResponse({"pid": os.getpid(), **stats})

    async def sleep(request):
        await asyncio.sleep(float(request.query_params["s"]))
        return JSONResponse({"slept": float(request.query_params["s"]), "pid": os.getpid()})

    async def block(request):
        import time
        time.sleep(float(request.query_params["s"]))  # blocks the event loop: a hung worker
        return JSONResponse({"pid": os.getpid()})

    async def boom(request):
        raise RuntimeError("kaboom")

    async def bad_input(request):
        raise InputError("the frobnicator is missing")

    async def stream(request):
        chunk = b"x" * 65536
        n = int(float(request.query_params["mb"]) * 16)

        async def gen():
            for _ in range(n):
                stats["chunks_streamed"] += 1
                yield chunk

        return StreamingResponse(gen(), media_type="application/octet-stream")

    async def upload(request):
        h, size = hashlib.sha256(), 0
        async for part in request.stream():
            h.update(part)
            size += len(part)
        return JSONResponse({"size": size, "sha256": h.hexdigest()})

    async def whoami(request):
        p = principal_of(request)
        return JSONResponse({"type": p.type, "subject": p.subject})

    for path, fn, methods in [
        ("/echo/{rest:path}", echo, ["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ("/pid", pid, ["GET"]),
        ("/sleep", sleep, ["GET"]),
        ("/boom", boom, ["GET"]),
        ("/block", block, ["GET"]),
        ("/input", bad_input, ["GET"]),
        ("/stream", stream, ["GET"]),
        ("/upload", upload, ["POST"]),
        ("/private/whoami", whoami, ["GET"]),
    ]:
        router.add_route(path, fn, methods=methods)
    for open_path in ("/echo", "/pid", "/sleep", "/block", "/boom", "/input", "/stream", "/upload"):
        router.add_auth_policy(open_path, allow="unauthenticated")
"""

# A second plugin whose routes are protected (secure by default) except /ping.
OTHER = """
import os
from starlette.responses import JSONResponse
from kernel.api import core_services, create_plugin, principal_of

plugin = create_plugin("other")


@plugin.init(router=core_services.http_router)
def init(router):
    async def ping(request):
        return JSONResponse({"pong": True, "pid": os.getpid()})

    async def whoami(request):
        p = principal_of(request)
        return JSONResponse({"type": p.type, "subject": p.subject})

    async def raw_app(scope, receive, send):  # any ASGI app can be mounted
        body = f"raw {scope['root_path']} {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    async def fallback(scope, receive, send):
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"fallback"})

    router.add_route("/ping", ping)
    router.add_route("/whoami", whoami)
    router.mount("/raw", raw_app)
    router.use(fallback)
    router.add_auth_policy("/ping", allow="unauthenticated")
    router.add_auth_policy("/raw", allow="unauthenticated")
    router.add_auth_policy("/elsewhere", allow="unauthenticated")
"""

CRASHY = """
import os
from kernel.api import core_services, create_plugin

plugin = create_plugin("crashy")


@plugin.init(router=core_services.http_router)
def init(router):
    os._exit(7)  # dies at start, every time
"""

BAD_ID = """
from kernel.api import create_plugin

plugin = create_plugin("Bad_Id")
"""

IMPORT_ERROR = """
import this_module_does_not_exist
"""

UNKNOWN_DEP = """
from kernel.api import core_services, create_plugin, create_service_ref

plugin = create_plugin("needy")
frobnicator = create_service_ref("acme.frobnicator")


@plugin.init(router=core_services.http_router, frob=frobnicator)
def init(router, frob):
    pass
"""

# A plugin with its own readiness check, switched by a route.
MOODY = """
from starlette.responses import JSONResponse
from kernel.api import core_services, create_plugin

plugin = create_plugin("moody")
state = {"ready": True}


@plugin.init(router=core_services.http_router, health=core_services.health)
def init(router, health):
    async def check():
        return state["ready"]

    async def toggle(request):
        state["ready"] = request.query_params["ready"] == "1"
        return JSONResponse(state)

    health.add_readiness_check(check, label="mood")
    router.add_route("/toggle", toggle, methods=["POST"])
    router.add_auth_policy("/", allow="unauthenticated")
"""

# A package that provides services and routes through the hooks (no plugin of its own).
PROVIDER = '''
from kernel.api import core_services, create_service_factory, create_service_ref, hookimpl


class DictCache:
    """A cache that tells who made it."""

    def __init__(self, plugin_id):
        self.plugin_id = plugin_id
        self.data = {}

    async def get(self, key):
        return self.data.get(key, f"from acme cache of {self.plugin_id}")

    async def set(self, key, value, *, ttl=None):
        self.data[key] = value

    async def delete(self, key):
        self.data.pop(key, None)

    def with_options(self, *, default_ttl=None):
        return self


@create_service_factory(core_services.cache, {"meta": core_services.plugin_metadata})
def acme_cache(meta):
    return DictCache(meta.plugin_id)


greeter = create_service_ref("acme.greeter")


@create_service_factory(greeter, {"logger": core_services.logger})
def acme_greeter(logger):
    return lambda name: f"greetings, {name}"


@hookimpl
def kernel_provide_services():
    return [acme_cache, acme_greeter]


@hookimpl
def kernel_register_routes(plugin_id, router):
    from starlette.responses import JSONResponse

    async def stamp(request):
        return JSONResponse({"stamped": plugin_id})

    router.add_route("/.acme/stamp", stamp)
    router.add_auth_policy("/.acme", allow="unauthenticated")
'''

# A plugin using the overridden cache and the provider's own service.
CONSUMER = """
from starlette.responses import JSONResponse
from kernel.api import core_services, create_plugin, create_service_ref

plugin = create_plugin("consumer")
greeter = create_service_ref("acme.greeter")


@plugin.init(router=core_services.http_router, cache=core_services.cache, greet=greeter)
def init(router, cache, greet):
    async def show(request):
        return JSONResponse({"cache": await cache.get("anything"), "greeting": greet("you")})

    router.add_route("/show", show)
    router.add_auth_policy("/", allow="unauthenticated")
"""

# Two service providers depending on each other.
CYCLE = """
from kernel.api import create_service_factory, create_service_ref, hookimpl

a = create_service_ref("loop.a")
b = create_service_ref("loop.b")


@hookimpl
def kernel_provide_services():
    return [
        create_service_factory(a, {"b": b})(lambda b: "a"),
        create_service_factory(b, {"a": a})(lambda a: "b"),
    ]
"""

# A plugin that touches config (with reload), discovery and lifecycle from its worker.
SERVICED = """
import os
from starlette.responses import JSONResponse
from kernel.api import core_services, create_plugin

plugin = create_plugin("serviced")
seen = {"startup": False, "changes": []}


@plugin.init(
    router=core_services.http_router,
    config=core_services.root_config,
    discovery=core_services.discovery,
    lifecycle=core_services.lifecycle,
    logger=core_services.logger,
)
def init(router, config, discovery, lifecycle, logger):
    def started():
        seen["startup"] = True

    lifecycle.add_startup_hook(started)
    config.subscribe(lambda new: seen["changes"].append(new.get_string("serviced.greeting")))

    async def show(request):
        return JSONResponse({
            "greeting": config.get_string("serviced.greeting"),
            "changes": seen["changes"],
            "startup": seen["startup"],
            "internal": await discovery.get_base_url("catalog"),
            "external": await discovery.get_external_base_url("catalog"),
        })

    router.add_route("/show", show)
    router.add_auth_policy("/", allow="unauthenticated")
"""

# A plugin whose init takes longer than the heartbeat timeout.
SLOW_BOOT = """
import asyncio
from starlette.responses import JSONResponse
from kernel.api import core_services, create_plugin

plugin = create_plugin("slow")


@plugin.init(router=core_services.http_router)
async def init(router):
    await asyncio.sleep(2.0)

    async def ok(request):
        return JSONResponse({"ok": True})

    router.add_route("/ok", ok)
    router.add_auth_policy("/", allow="unauthenticated")
"""
