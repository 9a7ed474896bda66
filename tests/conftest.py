"""Shared fixtures for the test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.homeserver import LocalSynapse


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
    from tests.fakes.graph import FakeGraph
    async with FakeGraph() as g:
        yield g


@pytest.fixture
async def env(synapse_users: LocalSynapse, graph, tmp_path):
    """A running bridge on its own rooms and database, with the admin staff member joined."""
    from tests.harness import Env, bridge_settings, new_prefix
    prefix = new_prefix()
    e = Env(synapse_users, graph, tmp_path, prefix, bridge_settings(synapse_users, graph, tmp_path, prefix=prefix))
    await e.start_bridge()
    e.admin = await e.staff_member("admin")
    try:
        yield e
    finally:
        await e.close()
