"""Store.open(path, create=False): the shell's read commands open an existing database only."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bridge.migrations import UPGRADES
from bridge.store import NoDatabase, Store


async def test_a_missing_database_is_not_made(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pengaduan.db"
    with pytest.raises(NoDatabase, match=f"^no database at {path}$"):
        await Store.open(path, create=False)
    assert list(tmp_path.iterdir()) == []                    # no folder, no file


async def test_it_reads_while_the_bridge_writes_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "pengaduan.db"
    bridge = await Store.open(path)
    try:
        async with bridge.transaction() as tx:
            await tx.set_state("seen", "before")
        reader = await Store.open(path, create=False)        # the bridge still has it open
        try:
            async with bridge.transaction() as tx:
                await tx.set_state("seen", "after")
            async with reader.reading() as tx:
                assert await tx.get_state("seen") == "after"
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                async with reader.transaction() as tx:
                    await tx.set_state("seen", "by the shell")
        finally:
            await reader.close()
        async with bridge.reading() as tx:
            assert await tx.get_state("seen") == "after"
    finally:
        await bridge.close()


async def test_an_older_schema_is_not_upgraded_by_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "pengaduan.db"
    sqlite3.connect(path).close()                            # an empty file: schema 0
    with pytest.raises(NoDatabase, match=f"schema 0, this code reads {max(UPGRADES)}: start the bridge"):
        await Store.open(path, create=False)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
