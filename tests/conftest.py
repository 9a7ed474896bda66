"""Shared fixtures for the test suite."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator

import pytest

from bridge.homeserver import LocalSynapse


# The files that take a minute or more, longest first. They start first: the two xdist
# workers (./run test: --dist loadfile --no-loadscope-reorder hands out files in the order
# collected) then end at about the same time, instead of one running the soak alone at the
# end (xdist's default order is by the number of tests in a file, which puts these last).
SLOW_FILES = ("test_soak.py", "test_crash.py", "test_faults.py", "test_processes.py", "test_demo.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))     # stable: the rest as collected


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    """One real Synapse for the whole session (client API on a free loopback port)."""
    server = LocalSynapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def synapse_users(synapse: LocalSynapse) -> LocalSynapse:
    """The session's Synapse with the bot and the four staff accounts registered."""
    from tests.harness import register_users
    register_users(synapse)
    return synapse


@pytest.fixture
async def graph():
    from bridge.simulator.graph import FakeGraph
    async with FakeGraph() as g:
        yield g


@pytest.fixture
async def botapi():
    """The fake Telegram Bot API (the bridge polls it when a test's env is made with it)."""
    from bridge.simulator.telegram import FakeBotApi
    api = FakeBotApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


def bridge_database(request: pytest.FixtureRequest) -> str:
    """The database a test's bridges run on, "sqlite" or "postgresql".

    PENGADUAN_TEST_DATABASE chooses one for every test (a whole run on one backend). By
    default half the tests take each, by a hash of the test's name (the same every run), so
    that one run of the suite drives the bridge end to end on both within its time; a test
    marked ``sqlite_only`` (it reads the SQLite file itself) always gets SQLite."""
    if request.node.get_closest_marker("sqlite_only"):
        return "sqlite"
    forced = os.environ.get("PENGADUAN_TEST_DATABASE")
    if forced:
        if forced not in ("sqlite", "postgresql"):
            raise pytest.UsageError(f"PENGADUAN_TEST_DATABASE={forced!r}: sqlite or postgresql")
        return forced
    return ("sqlite", "postgresql")[zlib.crc32(request.node.nodeid.encode()) % 2]


@pytest.fixture
async def make_env(synapse_users: LocalSynapse, graph, tmp_path, request: pytest.FixtureRequest):
    """Start a bridge on its own rooms and database: ``await make_env({"sop": {...}})``. The
    database is SQLite or PostgreSQL (``bridge_database``): a test's own either way."""
    from tests.harness import Env, bridge_settings, new_prefix
    made = []
    pg = request.getfixturevalue("postgres_server") if bridge_database(request) == "postgresql" else None
    databases: list[str] = []

    async def make(overrides: dict | None = None, clock=None, botapi=None, extra_env=None):
        prefix = new_prefix()
        data_dir = tmp_path / prefix
        database_url = None
        if pg is not None:
            databases.append(pg.unique_name(prefix))
            database_url = await pg.create_database(databases[-1])
        e = Env(synapse_users, graph, data_dir, prefix,
                bridge_settings(synapse_users, graph, data_dir, prefix=prefix, overrides=overrides, botapi=botapi,
                                extra_env=extra_env, database_url=database_url),
                clock=clock, tg=botapi)
        made.append(e)
        await e.start_bridge()
        e.admin = await e.staff_member("admin")
        return e
    try:
        yield make
    finally:
        for e in made:
            await e.close()
        for name in databases:
            await pg.drop_database(name)


@pytest.fixture
async def env(make_env):
    """A running bridge (SOP mojokerto) with the admin staff member joined to its room."""
    return await make_env()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):
    """This worker's own throwaway PostgreSQL (tests/postgres.py), started by the first test
    that asks for it. Each xdist worker has its own server, as it has its own Synapse: no
    cross-process locking, and no worker can outlive or stop the other's server. Skipped
    when Debian's postgresql is missing, except in CI (where .ci/run installs it)."""
    import os
    from tests.postgres import PostgresServer, find_bin_dir
    if find_bin_dir() is None and os.environ.get("CI") != "true":
        pytest.skip("Debian's postgresql is not installed (.ci/run installs it)")
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as pg:
        yield pg


@pytest.fixture
def postgres_db(postgres_server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on the worker's PostgreSQL for this test, dropped after it: its URL."""
    name = postgres_server.unique_name(request.node.name)
    yield postgres_server.create_database_sync(name)
    postgres_server.drop_database_sync(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A test's own empty database, once on each backend: a SQLite file's URL (in a folder
    not made yet) or a PostgreSQL database's."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/sub/db.sqlite"       # sqlite:/// + an absolute path: four slashes
    return request.getfixturevalue("postgres_db")
