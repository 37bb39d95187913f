"""The two database back ends of the RIS store: SQLite (embedded default) and MySQL/MariaDB.

Both hand out a `Tx`: a cursor inside one transaction, taking `?` placeholders (converted
for PyMySQL), returning rows as dicts, committed on success and rolled back on any error.
Driver errors become `RisDatabaseError` (unreachable, broken) or `RisConflict` (a UNIQUE
constraint), so the store never sees driver types. A MySQL/MariaDB server that cannot be reached
trips the database's circuit breaker (core/breaker.py): then calls fail fast with CIRCUIT_OPEN.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..core.breaker import CircuitBreaker
from ..core.config import BreakerConfig
from ..core.domain_config import MiniRisSettings, default_sqlite_path
from ..core.errors import ErrorCode, SlicerMCPError
from ..core.localhost import private_file
from .schema import MYSQL, SQLITE, Dialect

log = logging.getLogger(__name__)


class RisNotFound(SlicerMCPError):
    default_code = ErrorCode.RIS_NOT_FOUND


class RisConflict(SlicerMCPError):
    default_code = ErrorCode.RIS_CONFLICT


class RisDatabaseError(SlicerMCPError):
    default_code = ErrorCode.RIS_DATABASE_ERROR


def like_literal(text: str) -> str:
    """`text` for a LIKE pattern written with `ESCAPE '!'`: its %, _ and ! match only themselves."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


class Tx:
    """A cursor in one open transaction."""

    def __init__(self, cursor: Any, mysql: bool):
        self._cur = cursor
        self._mysql = mysql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Tx:
        if self._mysql:
            sql = sql.replace("?", "%s")
        self._cur.execute(sql, tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._mysql:
            sql = sql.replace("?", "%s")
        self._cur.executemany(sql, [tuple(r) for r in rows])

    def all(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._cur.fetchall()]

    def one(self) -> dict[str, Any] | None:
        row = self._cur.fetchone()
        return dict(row) if row is not None else None

    @property
    def lastrowid(self) -> int:
        return int(self._cur.lastrowid)


class Database:
    """A back end: a dialect and transactions."""

    dialect: Dialect
    describe: str

    def transaction(self) -> contextlib.AbstractContextManager[Tx]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SqliteDatabase(Database):
    """One short-lived connection per transaction: safe from any thread, WAL for concurrent readers."""

    dialect = SQLITE

    def __init__(self, path: Path):
        self.path = path
        self.describe = f"sqlite:{path}"
        try:
            private_file(path)  # names, MRNs, birth dates: 0600 before SQLite opens it (-wal/-shm follow)
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise RisDatabaseError(
                f"cannot open the RIS database {path}: {exc}. Check mini_ris.sqlite_path and the folder's permissions.",
                details={"backend": "sqlite", "path": str(path)},
            ) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        try:
            conn = sqlite3.connect(self.path, timeout=15.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise RisDatabaseError(f"cannot open the RIS database: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, much faster commits
            conn.execute("BEGIN IMMEDIATE")
            yield Tx(conn.cursor(), mysql=False)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise RisConflict(f"the RIS database refused a duplicate or dangling record: {exc}") from exc
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise RisDatabaseError(f"RIS database error: {exc}", details={"backend": "sqlite"}) from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()


#: client-side MySQL error numbers (CR_*, 2000-2999): the server did not answer (refused, timed out,
#: gone away); server errors (below 2000: access denied, unknown database) prove it is running
_CLIENT_ERRORS = range(2000, 3000)


def _unreachable(exc: BaseException) -> bool:
    cause = exc.__cause__
    code = cause.args[0] if cause is not None and cause.args else None
    return isinstance(exc, RisDatabaseError) and isinstance(code, int) and code in _CLIENT_ERRORS


class MySqlDatabase(Database):
    """PyMySQL connections in a small pool; a broken connection is dropped, not reused.

    New connections go through `breaker` (the RIS service keeps it across reopenings)."""

    dialect = MYSQL

    def __init__(
        self, settings: MiniRisSettings, connect_timeout: float = 5.0, breaker: CircuitBreaker | None = None
    ):
        import pymysql

        self._pymysql = pymysql
        self._settings = settings
        self._timeout = connect_timeout
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(settings.pool_size)
        self.describe = f"mysql://{settings.user}@{settings.host}:{settings.port}/{settings.database}"
        self.breaker = breaker or database_breaker(settings)

    def _connect(self) -> Any:
        return self.breaker.call(self._open_connection, _unreachable)

    def _open_connection(self) -> Any:
        s = self._settings
        try:
            return self._pymysql.connect(
                host=s.host,
                port=s.port,
                user=s.user,
                password=s.password.get_secret_value() if s.password else "",
                database=s.database,
                charset="utf8mb4",
                autocommit=False,
                connect_timeout=self._timeout,
                read_timeout=30,
                write_timeout=30,
                cursorclass=self._pymysql.cursors.DictCursor,
            )
        except self._pymysql.err.MySQLError as exc:
            raise RisDatabaseError(
                f"cannot reach the RIS database {self.describe}: {exc.args[-1] if exc.args else exc}. "
                "Is MariaDB/MySQL running? Check mini_ris host, port, user, password and database in the config.",
                details={"backend": "mysql", "host": s.host, "port": s.port, "database": s.database},
            ) from exc

    def _checkout(self) -> Any:
        """A pooled connection that still answers, else a new one."""
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            return self._connect()
        try:
            conn.ping(reconnect=False)
            return conn
        except self._pymysql.err.MySQLError:  # the server closed it (restart, timeout, KILL): start afresh
            with contextlib.suppress(Exception):
                conn.close()
            return self._connect()

    def _rolled_back(self, conn: Any) -> bool:
        """Roll back; False when the connection broke doing so (then it is not reused)."""
        try:
            conn.rollback()
        except self._pymysql.err.MySQLError:
            return False
        return True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        err = self._pymysql.err
        if not self._slots.acquire(timeout=30):
            raise RisDatabaseError("all RIS database connections are busy; raise mini_ris.pool_size or retry")
        conn = None
        reusable = False  # back to the pool only after a commit or a clean rollback
        try:
            conn = self._checkout()
            try:
                conn.begin()
                yield Tx(conn.cursor(), mysql=True)
                conn.commit()
                reusable = True
            except err.IntegrityError as exc:
                reusable = self._rolled_back(conn)
                raise RisConflict(
                    f"the RIS database refused a duplicate or dangling record: {exc.args[-1]}"
                ) from exc
            except err.MySQLError as exc:
                self._rolled_back(conn)  # not reused either way: the error may have broken it
                raise RisDatabaseError(
                    f"RIS database error ({self.describe}): {exc.args[-1] if exc.args else exc}",
                    details={"backend": "mysql"},
                ) from exc
            except BaseException:  # the caller refused (not found, conflict...): the connection is fine
                reusable = self._rolled_back(conn)
                raise
        finally:
            if conn is not None:
                if reusable:
                    self._pool.put(conn)
                else:
                    with contextlib.suppress(Exception):
                        conn.close()
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                conn.close()


def database_peer(settings: MiniRisSettings) -> str:
    """How the RIS database appears in breaker messages and `slicer://status` (no password)."""
    return f"the RIS database mysql://{settings.host}:{settings.port}/{settings.database}"


def database_breaker(settings: MiniRisSettings, breaker: BreakerConfig | None = None) -> CircuitBreaker:
    """The RIS database's breaker: its own (short) cool-down cap, and the server's port to look at."""
    return CircuitBreaker(
        database_peer(settings),
        (breaker or BreakerConfig()).for_ris_database(),
        address=(settings.host, settings.port),
    )


def open_database(settings: MiniRisSettings, breaker: CircuitBreaker | None = None) -> Database:
    if settings.backend == "mysql":
        return MySqlDatabase(settings, breaker=breaker)
    return SqliteDatabase(
        Path(settings.sqlite_path).expanduser() if settings.sqlite_path else default_sqlite_path()
    )
