"""The mini-RIS SQLite file holds names, MRNs and birth dates: 0600 in a 0700 folder, -wal/-shm too."""

import os
import sqlite3
import stat

import pytest

from SlicerMCPLib.ris.db import SqliteDatabase

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX modes")


def test_sqlite_database_and_wal_are_private(tmp_path):
    path = tmp_path / "ris" / "mini_ris.sqlite"
    old = os.umask(0o022)
    try:
        db = SqliteDatabase(path)
        with db.transaction() as tx:
            tx.execute("CREATE TABLE t (x TEXT)")
            tx.execute("INSERT INTO t VALUES ('DOE^JANE')")
        reader = sqlite3.connect(path)  # keeps -wal/-shm on disk (the last close removes them)
        reader.execute("SELECT * FROM t").fetchall()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert len(files) >= 2, files  # the database and its -wal
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        reader.close()
    finally:
        os.umask(old)


def test_existing_loose_database_is_tightened(tmp_path):
    path = tmp_path / "mini_ris.sqlite"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    SqliteDatabase(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
