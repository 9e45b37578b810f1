"""A PostgreSQL login per plugin (``backend.database.pluginRoles``): made by the supervisor before any worker starts.

With PostgreSQL, before it starts a worker, the supervisor (``kernel serve`` hands it ``plugin_logins``)
connects with the configured login (the kernel's, "admin" here) and, for each plugin:

* creates role ``<prefix><pluginId>`` (database mode: the name of its database) or
  ``<database>_<pluginId>`` (schema mode), ``LOGIN``, with its password sent as its SCRAM-SHA-256
  verifier (``scram_verifier``: the password is in no statement); a role that exists gets it anew
  (``ALTER ROLE``);
* database mode: creates the plugin's database if missing, makes the role its owner and the owner of
  every table, view and sequence in it (those an earlier kernel made with the shared login), and
  revokes ``CONNECT`` and ``TEMPORARY`` from ``PUBLIC``: another plugin's role is refused by
  PostgreSQL itself ("permission denied for database");
* schema mode: grants the role ``CONNECT`` on the shared database, creates schema ``<pluginId>``
  owned by the role (or hands it and its tables over), and revokes every privilege on it from
  ``PUBLIC`` ("permission denied for schema").

Each worker then gets its plugin's login in place of the kernel's (``kernel.config.scoping``, its
``login``): the kernel's password never reaches a worker. A role's password is an HMAC of its name
under a random secret the first kernel keeps on the server (table ``kernel_roles.secret`` in the
database the kernel's login connects to, ``PUBLIC`` refused): every kernel sharing the server gets the
same passwords, so one kernel starting never locks out another's workers (a cluster shares the
plugins' databases). Deleting that row rotates every password at the next start of the kernels.
Plugins are made one at a time under one advisory lock, so kernels starting together wait for each other.
The passwords matter only when ``pg_hba.conf`` asks for them (``scram-sha-256``); with ``trust`` any
local role logs in without one, and the privileges above are what keeps plugins apart.

``pluginRoles``: ``true``, ``false``, or unset (on when the kernel's login may create roles: a
superuser or ``CREATEROLE``; off otherwise, and when the server cannot be asked at start-up). Said
at start-up in the log either way. ``true`` and the roles cannot be made: the kernel does not start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from typing import Any
from urllib.parse import quote, urlparse, urlunparse

from kernel.api import ConfigError, ConfigReader
from kernel_services.database_common import DatabaseSettings, pg_args, pg_ident, read_settings

log = logging.getLogger("kernel")

#: the relations handed over to the plugin's role: tables, partitioned tables, views, materialized
#: views, foreign tables, then the sequences no table owns (a table's own go with it)
_RELATIONS = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE", "S": "SEQUENCE"}
_NOT_OWNED = """
SELECT n.nspname, c.relname, c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind::text = ANY($1::text[]) AND pg_get_userbyid(c.relowner) <> $2
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND ($3::text IS NULL OR n.nspname = $3)
ORDER BY c.relkind = 'S', n.nspname, c.relname
"""
#: where the secret the roles' passwords derive from is kept (a plugin id has no ``_``: no plugin's schema)
_SECRET_SCHEMA = "kernel_roles"


def role_name(settings: DatabaseSettings, plugin_id: str) -> str:
    """The role of ``plugin_id``: its database's name, or ``<database>_<pluginId>`` in schema mode."""
    if settings.division == "schema":
        return f"{_database(settings, plugin_id)}_{plugin_id}"
    return _database(settings, plugin_id)


def _database(settings: DatabaseSettings, plugin_id: str) -> str:
    _, configured = pg_args(settings.connection)
    if settings.division == "schema":
        return settings.own_database or configured or "postgres"
    return settings.own_database or settings.prefix + plugin_id


def with_login(connection: Any, user: str, password: str) -> Any:
    """``connection`` (a URL or ``{host, port, user, password, database}``) with ``user`` and ``password``."""
    if isinstance(connection, dict):
        return {**connection, "user": user, "password": password}
    url = urlparse(str(connection))
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{url.port}" if url.port else "")
    return urlunparse(url._replace(netloc=netloc))


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL keeps for ``password`` (``rolpassword``), made here as ``psql``'s
    ``\\password`` does: the role's password is set with it, so the password itself is in no statement,
    server log or ``pg_stat_statements`` row. ``password`` is ASCII (SASLprep leaves it as it is)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = [base64.b64encode(b).decode() for b in (salt, stored, server)]
    return f"SCRAM-SHA-256${iterations}:{b64[0]}${b64[1]}:{b64[2]}"


async def _may_create_roles(args: dict[str, Any], admin_db: str) -> bool:
    import asyncpg  # type: ignore[import-untyped]  # only when PostgreSQL is configured

    conn = await asyncpg.connect(**{**args, "database": admin_db}, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"))
    finally:
        await conn.close()


def _admin_db(settings: DatabaseSettings, database: str) -> str:
    _, configured = pg_args(settings.connection)
    return configured if configured and configured != database else "postgres"


async def _role_password(conn: Any, role: str) -> str:
    """``role``'s password: an HMAC of its name under the secret kept on the server (made by the first
    kernel to ask; the caller holds the provisioning lock)."""
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_SECRET_SCHEMA}")
    await conn.execute(f"REVOKE ALL ON SCHEMA {_SECRET_SCHEMA} FROM PUBLIC")
    await conn.execute(f"CREATE TABLE IF NOT EXISTS {_SECRET_SCHEMA}.secret (secret bytea NOT NULL)")
    secret = await conn.fetchval(f"SELECT secret FROM {_SECRET_SCHEMA}.secret LIMIT 1")
    if secret is None:
        secret = secrets.token_bytes(32)
        await conn.execute(f"INSERT INTO {_SECRET_SCHEMA}.secret VALUES ($1)", secret)
    digest = hmac.new(bytes(secret), f"kernel plugin role:{role}".encode(), "sha256").digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def _set_role(conn: Any, role: str) -> str:
    """``role`` made or altered, given its password; the password."""
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    await conn.execute(f"{verb} ROLE {pg_ident(role)} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        await conn.execute(f"GRANT {pg_ident(role)} TO CURRENT_USER")  # to give it what the kernel owns
    try:
        password = await _role_password(conn, role)
    except Exception as exc:
        where = await conn.fetchval("SELECT current_database()")
        raise ConfigError(
            f"cannot keep the roles' secret in schema {_SECRET_SCHEMA} of database '{where}': {exc}"
        ) from exc
    literal = "'" + scram_verifier(password).replace("'", "''") + "'"  # never the password itself
    await conn.execute(f"ALTER ROLE {pg_ident(role)} WITH PASSWORD {literal}")
    return password


async def _hand_over(conn: Any, role: str, schema: str | None) -> None:
    """Every relation (in ``schema``, or in every schema of the database) made the own of ``role``."""
    for kinds in (["r", "p", "v", "m", "f"], ["S"]):  # a table's sequences go with it: left out of the second pass
        for row in await conn.fetch(_NOT_OWNED, kinds, role, schema):
            what = _RELATIONS[row["relkind"]]
            await conn.execute(
                f"ALTER {what} {pg_ident(row['nspname'])}.{pg_ident(row['relname'])} OWNER TO {pg_ident(role)}"
            )


async def _provision(settings: DatabaseSettings, plugin_id: str, role: str) -> str:
    """``plugin_id``'s role, database or schema made (see the module doc); its password."""
    import asyncpg  # only when PostgreSQL is configured

    from kernel_services.database_postgres import _ensure_database, advisory_key

    args, _ = pg_args(settings.connection)
    database = _database(settings, plugin_id)
    admin_db = _admin_db(settings, database)
    await _ensure_database(args, database, admin_db)
    conn = await asyncpg.connect(**{**args, "database": admin_db}, timeout=10)
    try:
        # one lock for every kernel's roles, held until the plugin is done: a catalog row two kernels alter
        # at once (the shared database's grants, say) fails in one of them ("tuple concurrently updated");
        # the lock goes with the connection, whatever happens
        await conn.execute("SELECT pg_advisory_lock($1)", advisory_key(_SECRET_SCHEMA))
        password = await _set_role(conn, role)
        if settings.division == "database":
            await conn.execute(f"ALTER DATABASE {pg_ident(database)} OWNER TO {pg_ident(role)}")
            await conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {pg_ident(database)} FROM PUBLIC")
        else:
            await conn.execute(f"GRANT CONNECT ON DATABASE {pg_ident(database)} TO {pg_ident(role)}")
        await _own_contents(args, database, role, plugin_id if settings.division == "schema" else None)
    finally:
        await conn.close()
    return password


async def _own_contents(args: dict[str, Any], database: str, role: str, schema: str | None) -> None:
    """In ``database``: ``schema`` made (schema mode) and, with what is in it, handed to ``role``."""
    import asyncpg  # only when PostgreSQL is configured

    conn = await asyncpg.connect(**{**args, "database": database}, timeout=10)
    try:
        if schema is not None:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {pg_ident(schema)} AUTHORIZATION {pg_ident(role)}")
            await conn.execute(f"ALTER SCHEMA {pg_ident(schema)} OWNER TO {pg_ident(role)}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {pg_ident(schema)} FROM PUBLIC")
        await _hand_over(conn, role, schema)
    finally:
        await conn.close()


def _pg_plugins(config: ConfigReader, plugin_ids: list[str]) -> dict[str, DatabaseSettings]:
    found: dict[str, DatabaseSettings] = {}
    for pid in plugin_ids:
        try:
            settings = read_settings(config, pid)
        except (ValueError, ConfigError):  # the worker reports a bad database config itself
            continue
        if settings.client == "pg":
            found[pid] = settings
    return found


async def _roles_on(config: ConfigReader, plugins: dict[str, DatabaseSettings]) -> tuple[bool, str]:
    """Whether ``pluginRoles`` applies, and why (for the log)."""
    wanted = config.get_optional("backend.database.pluginRoles")
    if wanted is not None and not isinstance(wanted, bool):
        raise ConfigError(f"Invalid config: backend.database.pluginRoles must be true or false, not {wanted!r}")
    if wanted is not None:
        return wanted, f"backend.database.pluginRoles is {str(wanted).lower()}"
    first_id, first = next(iter(plugins.items()))
    args, _ = pg_args(first.connection)
    who = args.get("user") or urlparse(str(args.get("dsn", ""))).username or "the configured user"
    import asyncpg  # only when PostgreSQL is configured

    try:
        able = await _may_create_roles(args, _admin_db(first, _database(first, first_id)))
    except (OSError, asyncpg.PostgresError) as exc:
        return False, (
            f"backend.database.pluginRoles unset and PostgreSQL cannot be asked whether login '{who}' may create "
            f"roles ({exc}), until the kernel restarts"
        )
    may = "may" if able else "may not"
    return able, f"backend.database.pluginRoles unset and login '{who}' {may} create roles"


def _login(config: ConfigReader, plugin_id: str, settings: DatabaseSettings, password: str) -> dict[str, Any]:
    login = {"backend.database.connection": with_login(settings.connection, role_name(settings, plugin_id), password)}
    if isinstance(config.get_optional(f"backend.database.plugin.{plugin_id}.connection"), dict | str):
        login[f"backend.database.plugin.{plugin_id}.connection"] = login["backend.database.connection"]
    return login


async def plugin_logins(config: ConfigReader, plugin_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each PostgreSQL plugin's role made (see the module doc); per plugin, the config values its workers
    get in place of the kernel's (dotted path to value). Empty when ``pluginRoles`` is off.

    Raises ``ConfigError`` when ``pluginRoles`` is ``true`` and the roles cannot be made.
    """
    plugins = _pg_plugins(config, plugin_ids)
    if not plugins:
        return {}
    on, why = await _roles_on(config, plugins)
    if not on:
        log.warning("%s: every plugin connects to PostgreSQL with the kernel's login", why)
        return {}
    logins: dict[str, dict[str, Any]] = {}
    for pid, settings in plugins.items():
        role = role_name(settings, pid)
        try:
            password = await _provision(settings, pid, role)
        except Exception as exc:  # any failure: no worker may start with the kernel's login instead
            raise ConfigError(f"cannot make the PostgreSQL role of plugin '{pid}' ({role}): {exc}") from exc
        logins[pid] = _login(config, pid, settings, password)
    roles = ", ".join(role_name(s, p) for p, s in plugins.items())
    log.info("%s: each plugin connects to PostgreSQL as a role of its own (%s)", why, roles)
    return logins


#: what ``kernel config visible`` shows of a plugin's password (``_role_password``)
PLANNED_PASSWORD = "<derived by the kernel from the secret it keeps on the server>"


async def planned_login(config: ConfigReader, plugin_id: str) -> tuple[dict[str, Any], str]:
    """What ``plugin_logins`` would give ``plugin_id`` (its password a placeholder), nothing made; and why."""
    plugins = _pg_plugins(config, [plugin_id])
    if not plugins:
        return {}, ""
    on, why = await _roles_on(config, plugins)
    return (_login(config, plugin_id, plugins[plugin_id], PLANNED_PASSWORD) if on else {}), why
