"""Writing rows in one round trip to the database.

Each web process runs many requests in threads that share one GIL. A transaction that locks a hot
row (a tenant's budget period, written by every request of the tenant) and then waits for its
process to send ``COMMIT`` keeps the row locked while that thread waits for the GIL — under load,
for milliseconds, with every other request of the tenant queued behind it. Sent in one round trip
(psycopg's pipeline mode: ``BEGIN``, the statements, ``COMMIT``, then one wait for all the answers),
the transaction is committed — and its locks released — by the database alone. What that saves
against Django's ``transaction.atomic()`` with ``save()`` is measured in benchmarks/results/plain_code.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection, models, transaction
from psycopg import Cursor, pq

from routing.caches import process_cache

T = TypeVar("T")

# A write that failed because of the database (connection lost, lock or statement timeout, deadlock,
# serialization failure) is tried again this many times in all, after pauses growing from the first:
# a database that restarts or fails over is usually back within a few seconds.
WRITE_ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.1

# What PostgreSQL's text and jsonb refuse in a string: NUL, and UTF-16 surrogates (Python strings can
# hold them alone; UTF-8 cannot encode them).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def insert_from(instance: models.Model, *, source: str, prefix: str = "row_") -> tuple[str, dict]:
    """``INSERT INTO <table> (…) SELECT <values> FROM <source>`` for the unsaved ``instance``: written
    only if ``source`` (a CTE of the same statement) yields a row. Every value is cast to its column's
    type, so that PostgreSQL never has to guess the type of a NULL or a string. Fields filled on save
    (``auto_now_add``) are filled on ``instance`` too, as ``save()`` would. Its parameters are named
    ``prefix`` + column number: several rows can go into one statement, each with its own prefix."""
    statement, fields = _insert_template(type(instance))
    params = {
        f"{prefix}{index}": field.get_db_prep_save(field.pre_save(instance, add=True), connection)
        for index, field in enumerate(fields)
    }
    if prefix != "row_":
        statement = statement.replace("%(row_", f"%({prefix}")
    return statement.replace("{source}", source), params


def _insert_template(model: type[models.Model]) -> tuple[str, tuple]:
    """The model's INSERT … SELECT with a placeholder per column, built once per model."""
    template = _insert_templates.get(model)
    if template is None:
        template = _build_insert_template(model)
        _insert_templates.set(model, template)
    return template


_insert_templates = process_cache("services.rows.insert_templates")


def _build_insert_template(model: type[models.Model]) -> tuple[str, tuple]:
    fields = tuple(model._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = ", ".join(f"%(row_{index})s::{field.db_type(connection)}" for index, field in enumerate(fields))
    table = connection.ops.quote_name(model._meta.db_table)
    return f"INSERT INTO {table} ({columns}) SELECT {values} FROM {{source}}", fields


def saved(instance: models.Model) -> models.Model:
    """Mark ``instance`` as a row of the database (it was written by :func:`insert_from`)."""
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def transaction_in_one_round_trip(sql: str, params: dict, *, wait_for_disk: bool = True) -> list[tuple]:
    """Run ``sql`` as a transaction of its own, sent with its ``BEGIN`` and ``COMMIT`` in one round trip;
    its rows. ``wait_for_disk=False`` commits without waiting for the WAL flush (see
    ``budgets.commit_without_waiting_for_disk`` for what that gives up).

    Inside a transaction already open (an outer ``atomic()``, as in tests) the statement runs in it,
    under a savepoint (a failure undoes the statement alone): that transaction's commit is its caller's."""
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            if not wait_for_disk:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
            cursor.execute(sql, params)
            return cursor.fetchall()
    connection.ensure_connection()
    raw = connection.connection
    with connection.wrap_database_errors, raw.cursor() as control, Cursor(raw) as cursor:
        try:
            with raw.pipeline():
                control.execute("BEGIN")
                if not wait_for_disk:
                    control.execute("SET LOCAL synchronous_commit TO OFF")
                # Bound by the server and prepared once per connection (the web's threads keep theirs):
                # Django's cursors bind on the client — every value quoted in Python, the statement
                # parsed and planned again on every call.
                cursor.execute(sql, params, prepare=True)
                control.execute("COMMIT")
        except Exception:
            # The statement failed: the rest of the pipeline was skipped and the transaction is aborted.
            try:
                if raw.info.transaction_status != pq.TransactionStatus.IDLE:
                    raw.execute("ROLLBACK")
            except Exception:
                connection.errors_occurred = True  # checked by Django before the connection is reused
            raise
        return cursor.fetchall()


def transient(error: BaseException) -> bool:
    """Whether ``error`` came from the database rather than from the rows written: the same write may
    succeed later. A refused value (NUL, a CHECK) is refused again; a lost connection may come back."""
    return isinstance(error, OperationalError | InterfaceError)


def retried(write: Callable[[], T], *, attempts: int = WRITE_ATTEMPTS) -> T:
    """``write()``, tried again after a pause (0.1 s, doubling) while the database fails, at most
    ``attempts`` times in all; an error of the rows themselves is raised at once, as is the last one.
    A broken connection is closed between tries, so that the next one opens a new one."""
    for attempt in range(attempts):
        try:
            return write()
        except Exception as error:
            if not transient(error) or attempt == attempts - 1:
                raise
            _recover_connection()
            time.sleep(RETRY_PAUSE_SECONDS * 2**attempt)
    raise AssertionError("unreachable")


def _recover_connection() -> None:
    if connection.in_atomic_block or not connection.errors_occurred:
        return
    if connection.is_usable():
        connection.errors_occurred = False
    else:
        connection.close()  # the next query connects again (or takes another from the pool)


def storable(value):
    """``value`` (a string, or lists and dicts of them) with what PostgreSQL cannot store in text or jsonb
    — NUL and lone surrogates — replaced by U+FFFD, the character for one that could not be read."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(storable(item) for item in value)
    return value


def make_storable(instance: models.Model) -> bool:
    """Replace, in every field of the unsaved ``instance``, what PostgreSQL cannot store (:func:`storable`);
    whether anything changed."""
    changed = False
    for field in instance._meta.concrete_fields:
        value = getattr(instance, field.attname)
        cleaned = storable(value)
        if cleaned != value:
            setattr(instance, field.attname, cleaned)
            changed = True
    return changed
