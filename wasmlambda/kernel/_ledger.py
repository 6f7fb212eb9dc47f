"""The billing ledger: every invocation, durably, in SQLite (WAL mode).

Theory of operation: the hot path only appends a row to an in-memory batch.
A background task writes the batch every ``flush_interval_s`` on a worker
thread (one connection, one thread at a time), in one transaction, up to
512 rows per INSERT statement: ``executemany`` hands the GIL back and forth
once per row, and against a busy event loop 1400 rows took 1.8 s of
convoying that slowed the loop by a fifth (multi-row: ~20 ms).  A clean
shutdown writes what is pending; a kill -9 loses at most the rows recorded
since the last flush.  Queries flush first, so they see every call that has
already answered.  With WAL and synchronous=NORMAL a committed batch
survives a process crash (not necessarily a power cut).

A batch that cannot be written (disk full, database locked by another
process) is rolled back and kept, in order, in front of the next one; the
writer backs off (doubling, up to ``MAX_BACKOFF_S``), says what failed in
the worker's log and counts it (``write_failures``, on /metrics).  Nothing
is dropped: the rows wait in memory until the database takes them.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ._meter import Bill, Quote, Usage

COLUMNS = ("request_id", "function", "ts", "status", "cold", "queue_us", "restore_us", "run_us", "cpu_us",
           "billed_us",
           "memory_mb", "peak_memory_bytes", "fuel", "bytes_in", "bytes_out", "cost_pusd", "memory_cost_pusd",
           "cost_1ms_pusd", "cost_100ms_pusd", "nested_calls", "nested_cost_pusd")
GROUPS = {"fn": "function", "minute": "CAST(ts / 60 AS INTEGER) * 60", "hour": "CAST(ts / 3600 AS INTEGER) * 3600"}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS invocations (
    {", ".join(f"{column} {'TEXT' if column in ('request_id', 'function') else 'INTEGER'}" for column in COLUMNS)},
    PRIMARY KEY (request_id)
);
CREATE INDEX IF NOT EXISTS invocations_by_time ON invocations (ts);
CREATE INDEX IF NOT EXISTS invocations_by_function ON invocations (function, ts);
"""
_MAX_ROWS_PER_INSERT = 512
MAX_BACKOFF_S = 30.0


@functools.lru_cache(maxsize=16)
def _insert(rows: int) -> str:
    """The INSERT of ``rows`` rows (a power of two, so that few distinct statements exist)."""
    values = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    return f"INSERT OR REPLACE INTO invocations ({', '.join(COLUMNS)}) VALUES {', '.join([values] * rows)}"


Row = tuple[Any, ...]


class Ledger:
    def __init__(self, path: Path, flush_interval_s: float, log: Callable[[str], None] = print,
                 busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.flush_interval_s = flush_interval_s
        self.write_failures = 0
        self._log = log
        self._pending: list[Row] = []
        self._lock = threading.Lock()  # the connection is used by one thread at a time
        self._limiter = trio.CapacityLimiter(1)
        self._connection = sqlite3.connect(path, timeout=busy_timeout_s, check_same_thread=False,
                                           isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(_SCHEMA)
        present = {row[1] for row in self._connection.execute("PRAGMA table_info(invocations)")}
        for column in COLUMNS:
            if column not in present:  # a ledger written by an older version
                self._connection.execute(f"ALTER TABLE invocations ADD COLUMN {column} INTEGER DEFAULT 0")
        # Rows per statement: a power of two within SQLite's limit on bound values.
        bound_values = self._connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        fits = min(_MAX_ROWS_PER_INSERT, bound_values // len(COLUMNS))
        self._rows_per_insert = 1 << (fits.bit_length() - 1)

    def record(self, usage: Usage, quote: Quote, nested: Bill) -> int:
        """Queue a request's row: its own quote plus its nested calls'.
        Returns the request's cost in pico-dollars."""
        cost, memory_cost, at_1ms, at_100ms = nested.with_own(quote)
        self._pending.append((
            usage.request_id, usage.function, usage.started_at, usage.status, int(usage.cold), usage.queue_us,
            usage.restore_us, usage.run_us, usage.cpu_us, usage.billed_us, usage.memory_mb, usage.peak_memory_bytes,
            usage.fuel, usage.bytes_in, usage.bytes_out, cost, memory_cost, at_1ms, at_100ms,
            nested.calls, nested.totals[0],
        ))
        return cost

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Flush forever, backing off while writes fail (the caller's nursery cancels it)."""
        delay = self.flush_interval_s
        while True:
            await trio.sleep(delay)
            delay = self.flush_interval_s if await self.flush() else min(delay * 2, MAX_BACKOFF_S)

    async def flush(self) -> bool:
        """Write what is pending; False (the rows kept for the next try) if the database refused."""
        rows, self._pending = self._pending, []
        if not rows:
            return True
        try:
            await trio.to_thread.run_sync(self._write, rows, limiter=self._limiter)
        except (sqlite3.Error, OSError) as exc:
            self._pending[:0] = rows  # in front of what arrived meanwhile: order kept
            self.write_failures += 1
            self._log(f"ledger: cannot write {len(rows)} row(s) to {self.path} ({exc}); keeping them to retry")
            return False
        return True

    def _write(self, rows: list[Row]) -> None:
        with self._lock:
            self._connection.execute("BEGIN")
            try:
                start = 0
                while start < len(rows):  # in order: a row replaced later in the batch stays replaced
                    count = min(self._rows_per_insert, 1 << ((len(rows) - start).bit_length() - 1))
                    values = [value for row in rows[start:start + count] for value in row]
                    self._connection.execute(_insert(count), values)
                    start += count
                self._connection.execute("COMMIT")
            except BaseException:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise

    async def _read(self, sql: str, parameters: list[Any]) -> list[dict[str, Any]]:
        await self.flush()

        def read() -> list[dict[str, Any]]:
            with self._lock:
                cursor = self._connection.execute(sql, parameters)
                names = [column[0] for column in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return await trio.to_thread.run_sync(read, limiter=self._limiter)

    async def aggregate(self, function: str | None, since: float | None, until: float | None,
                        group: str) -> list[dict[str, Any]]:
        key = GROUPS[group]
        where, parameters = _filters(function, since, until)
        sql = (f"SELECT {key} AS bucket, COUNT(*) AS invocations, SUM(cold) AS cold_starts, "
               "SUM(status >= 400) AS errors, SUM(billed_us) AS billed_us, SUM(cost_pusd) AS cost_pusd, "
               "SUM(memory_cost_pusd) AS memory_cost_pusd, "
               "SUM(cost_1ms_pusd) AS cost_1ms_pusd, SUM(cost_100ms_pusd) AS cost_100ms_pusd "
               f"FROM invocations {where} GROUP BY bucket ORDER BY bucket")
        return await self._read(sql, parameters)

    async def find(self, request_id: str) -> dict[str, Any] | None:
        rows = await self._read("SELECT * FROM invocations WHERE request_id = ?", [request_id])
        return rows[0] if rows else None

    def close(self) -> None:
        """Write what is pending and close (at shutdown, off any event loop)."""
        rows, self._pending = self._pending, []
        if rows:
            try:
                self._write(rows)
            except (sqlite3.Error, OSError) as exc:
                self._log(f"ledger: {len(rows)} row(s) could not be written at shutdown ({exc}); they are lost")
        with self._lock:
            self._connection.close()


def _filters(function: str | None, since: float | None, until: float | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    parameters: list[Any] = []
    for clause, value in (("function = ?", function), ("ts >= ?", since), ("ts < ?", until)):
        if value is not None:
            clauses.append(clause)
            parameters.append(value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", parameters
