"""What the fault tests share: the fixture plugins they install, and the kernel's processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from kernel.testing import KernelProcess, make_package
from tests import plugins

PG_PORT = 5432
REDIS_PORT = 6379
PG_ADMIN_DSN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/test"


@pytest.fixture(scope="session")
def faults_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site with the fault tests' plugins: ledger (database), memo (cache), stubborn, chatty, and echo."""
    root = tmp_path_factory.mktemp("faults-site")
    for dist, module, source, plugin in [
        ("kernel-test-ledger", "test_ledger", plugins.LEDGER, "ledger"),
        ("kernel-test-memo", "test_memo", plugins.MEMO, "memo"),
        ("kernel-test-echo", "test_echo", plugins.ECHO, "echo"),
    ]:
        make_package(root, dist, {module: source}, {plugin: f"{module}:plugin"})
    return root


@pytest.fixture(scope="session")
def pg_prefix() -> Iterator[str]:
    """A database name prefix of this run; its databases are dropped when the session ends."""
    prefix = f"kt_faults_{uuid.uuid4().hex[:8]}_"
    yield prefix
    asyncio.run(_drop_databases(prefix))


async def _drop_databases(prefix: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix)
        for row in rows:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        # the plugins' roles (services.database_roles), once the databases they own are gone
        for row in await conn.fetch("SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", prefix):
            await conn.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')
    finally:
        await conn.close()


def children(kernel: KernelProcess, kind: str, plugin: str = "") -> list[psutil.Process]:
    """The kernel's gateway (``kind`` ``gateway``) or worker processes (of ``plugin``, when given)."""
    assert kernel.proc is not None
    found = []
    for child in psutil.Process(kernel.proc.pid).children():
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if len(cmd) >= 4 and cmd[2] == f"kernel.{kind}" and cmd[3].startswith(f"{plugin}." if plugin else ""):
            found.append(child)
    return found


def lines_with(kernel: KernelProcess, text: str) -> list[str]:
    return [line for line in kernel.output().splitlines() if text in line]
