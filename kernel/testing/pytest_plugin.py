"""The kernel's pytest plugin (entry point ``pytest11``): an installed kernel brings these fixtures.

- ``mock_credentials``, ``mock_services``: the objects of ``kernel.testing`` (also importable);
- ``test_database``: a fresh database, each test run on ``sqlite`` and on ``postgres``
  (``@pytest.mark.parametrize("test_database", ["sqlite"], indirect=True)`` for one);
- ``test_databases``: ``TestDatabases`` for the test (``await test_databases.init("postgres")``);
- ``test_cache`` (``memory`` and ``redis``), ``test_caches``: the same for caches.

The database and cache fixtures are async: they need pytest-asyncio (the kernel's ``test`` extra).
Nothing heavy is imported until a fixture is used, so the plugin costs nothing to suites that
do not use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kernel.testing.credentials import _MockCredentials
    from kernel.testing.databases import TestCache, TestCaches, TestDatabase, TestDatabases
    from kernel.testing.mocks import _MockServices

try:
    import pytest_asyncio

    HAVE_ASYNCIO = True
except ImportError:  # pragma: no cover - the async fixtures then say what is missing
    HAVE_ASYNCIO = False

DATABASE_ENGINES = ("sqlite", "postgres")
CACHE_STORES = ("memory", "redis")


@pytest.fixture
def mock_credentials() -> _MockCredentials:
    """``kernel.testing.mock_credentials``."""
    from kernel.testing.credentials import mock_credentials

    return mock_credentials


@pytest.fixture
def mock_services() -> _MockServices:
    """``kernel.testing.mock_services``."""
    from kernel.testing.mocks import mock_services

    return mock_services


if HAVE_ASYNCIO:

    @pytest_asyncio.fixture
    async def test_databases() -> AsyncIterator[TestDatabases]:
        """Fresh databases for this test, dropped after it."""
        from kernel.testing.databases import TestDatabases

        databases = TestDatabases()
        try:
            yield databases
        finally:
            await databases.close()

    @pytest_asyncio.fixture(params=DATABASE_ENGINES)
    async def test_database(request: pytest.FixtureRequest, test_databases: TestDatabases) -> TestDatabase:
        """A fresh database; the test runs once on each engine."""
        return await test_databases.init(request.param)

    @pytest_asyncio.fixture
    async def test_caches() -> AsyncIterator[TestCaches]:
        """Fresh caches for this test, emptied after it."""
        from kernel.testing.databases import TestCaches

        caches = TestCaches()
        try:
            yield caches
        finally:
            await caches.close()

    @pytest_asyncio.fixture(params=CACHE_STORES)
    async def test_cache(request: pytest.FixtureRequest, test_caches: TestCaches) -> TestCache:
        """A fresh cache; the test runs once on each store."""
        return await test_caches.init(request.param)

else:  # pragma: no cover

    def _needs_asyncio(*args: Any) -> Any:
        pytest.fail("the kernel's test_database/test_cache fixtures need pytest-asyncio (pip install pytest-asyncio)")

    test_databases = pytest.fixture(_needs_asyncio, name="test_databases")
    test_database = pytest.fixture(_needs_asyncio, name="test_database")
    test_caches = pytest.fixture(_needs_asyncio, name="test_caches")
    test_cache = pytest.fixture(_needs_asyncio, name="test_cache")
