"""The service's reference store: one schema and one migration list for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL``: a transaction is on disk when ``commit`` returns, so an
acknowledged upload survives ``kill -9`` and a crash mid-transaction leaves nothing of it. PostgreSQL (psycopg 3,
extra ``xloc[postgres]``) gives the same guarantee with its default ``synchronous_commit``.

Queries are written once with ``?`` placeholders; the PostgreSQL dialect rewrites them to ``%s``. Arrays are
stored as ``.npy`` bytes (read back with ``allow_pickle=False``).
"""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from xloc.errors import DataValidationError

__all__ = ["Database", "MIGRATIONS", "array_bytes", "bytes_array"]

#: Ordered schema migrations; ``{id}`` and ``{blob}`` are replaced per dialect. Never edit a released step:
#: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE environments (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        frequency_hz DOUBLE PRECISION,
        ap_ids TEXT NOT NULL,
        ap_positions_m TEXT,
        bounds_m TEXT,
        shape TEXT,
        key_hash TEXT NOT NULL UNIQUE,
        pinned_version INTEGER,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE batches (
        environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
        batch_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        digest TEXT NOT NULL,
        positions {blob} NOT NULL,
        measurements {blob} NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (environment_id, batch_id)
    );
    CREATE TABLE models (
        environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        n_references INTEGER NOT NULL,
        info TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (environment_id, version)
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
        method TEXT NOT NULL,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        progress DOUBLE PRECISION NOT NULL,
        message TEXT NOT NULL,
        version INTEGER,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 2: jobs carry a lease (the server process running them and until when); a job is failed only when its lease
    # expires, so several server processes can share one store.
    """
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION
    """,
    # 3: an optional floor-plan image per site, drawn by the map page under its bounds_m.
    """
    CREATE TABLE floor_plans (
        environment_id TEXT PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
        content_type TEXT NOT NULL,
        image {blob} NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    # 4: a batch is part of the site's survey or a fresh labelled batch for recalibrating the serving version.
    """
    ALTER TABLE batches ADD COLUMN purpose TEXT NOT NULL DEFAULT 'survey'
    """,
)


def array_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def bytes_array(b: bytes | memoryview) -> np.ndarray:
    return np.load(io.BytesIO(bytes(b)), allow_pickle=False)


class Database:
    """Thread-safe access to the store at ``url``: a SQLite file path (or ``sqlite:///path``) or a
    ``postgresql://`` URL. Migrations run on open."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        self._local = threading.local()
        if self.dialect == "sqlite":
            path = url.removeprefix("sqlite:///")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.path = path
        else:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise DataValidationError("a postgresql:// store needs psycopg: pip install 'xloc[postgres]'") from None
        self._migrate()

    # --- connections -------------------------------------------------------------------------------------------
    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.dialect == "sqlite":
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
            else:
                import psycopg

                conn = psycopg.connect(self.url, autocommit=True)
            self._local.conn = conn
        return conn

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s") if self.dialect == "postgresql" else query

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """A transaction committed (durably) when the block exits normally, rolled back otherwise."""
        conn = self._connection()
        if self.dialect == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(self, conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        else:
            with conn.transaction():
                yield _Tx(self, conn)

    def query(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one read-only statement."""
        cur = self._connection().execute(self._sql(query), tuple(params))
        return list(cur.fetchall())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- migrations --------------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        ident = ("INTEGER PRIMARY KEY AUTOINCREMENT" if self.dialect == "sqlite"
                 else "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        blob = "BLOB" if self.dialect == "sqlite" else "BYTEA"
        with self.transaction() as tx:
            tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = tx.fetch("SELECT version FROM schema_version")
            current = rows[0][0] if rows else 0
            if not rows:
                tx.execute("INSERT INTO schema_version (version) VALUES (0)")
            if current > len(MIGRATIONS):
                raise DataValidationError(f"store {self.url} has schema version {current}, newer than this xloc "
                                          f"({len(MIGRATIONS)})")
            for step in MIGRATIONS[current:]:
                for statement in step.replace("{id}", ident).replace("{blob}", blob).split(";"):
                    if statement.strip():
                        tx.execute(statement)
            tx.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))

    def schema_version(self) -> int:
        return int(self.query("SELECT version FROM schema_version")[0][0])


class _Tx:
    def __init__(self, db: Database, conn: Any) -> None:
        self._db, self._conn = db, conn

    def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        cur = self._conn.execute(self._db._sql(query), tuple(params))
        return int(cur.rowcount)

    def fetch(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self._conn.execute(self._db._sql(query), tuple(params)).fetchall())
