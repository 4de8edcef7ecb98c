"""The `logs` table: its columns (`COLUMNS`, the only definition) and the migration that creates or upgrades it.

Everything about the table's shape is generated from `COLUMNS`: the CREATE TABLE, the upgrade path (new nullable
columns are added to an existing table), and the sink's INSERT column list and array casts. Why the shape is what
it is:

- Range-partitioned by `ts`, monthly, with a DEFAULT partition, so an insert never fails for want of a partition;
  a partition created later takes over its month's rows from the default partition.
- PRIMARY KEY (ts, record_id): PostgreSQL requires a partitioned table's unique keys to contain the partition key,
  and `record_id` alone is unique anyway, so this is the idempotency key of `INSERT … ON CONFLICT DO NOTHING`.
  Its leading `ts` also serves every time-range scan, so there is no separate index on (ts) to maintain.
- Roles `flightrec_writer` (INSERT) and `flightrec_reader` (SELECT) are created NOLOGIN; users grant them to
  their login roles. Nobody but the owner may UPDATE, DELETE or TRUNCATE: the table is an audit trail.
- Every statement is idempotent and guarded by a catalog check, so a migration of an up-to-date database takes no
  lock that would stall writers; the `flightrec_schema_version` table records the version and a migration refuses
  to run against a table that a newer flightrec has already upgraded.

Imports: stdlib; psycopg only inside `migration_sql`/`migrate` (it costs ~85 ms of cold start, and the column
definitions must be importable without it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, its PostgreSQL type, and the event key that fills it (None: the whole rendered JSON)."""

    name: str
    sql_type: str
    source: str | None
    not_null: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("ts", "timestamptz", "timestamp", not_null=True),
    Column("record_id", "text", "record_id", not_null=True),
    Column("kind", "text", "kind"),
    Column("level", "text", "level"),
    Column("logger", "text", "logger"),
    Column("message", "text", "message"),
    Column("request_id", "text", "request_id"),
    Column("function_name", "text", "function_name"),
    Column("function_version", "text", "function_version"),
    Column("tenant_id", "text", "tenant_id"),
    Column("trace_id", "text", "trace_id"),
    Column("span_id", "text", "span_id"),
    Column("xray_trace_id", "text", "xray_trace_id"),
    Column("cold_start", "boolean", "cold_start"),
    Column("duration_ms", "double precision", "duration_ms"),
    Column("status", "text", "status"),
    Column("error_type", "text", "error_type"),
    Column("init_duration_ms", "double precision", "init_duration_ms"),
    Column("max_memory_used_mb", "integer", "max_memory_used_mb"),
    Column("record", "jsonb", None, not_null=True),
)

#: Bumped whenever `migration_sql` changes what it creates; recorded per table in `flightrec_schema_version`.
SCHEMA_VERSION = 1
PRIMARY_KEY: tuple[str, ...] = ("ts", "record_id")
PARTITION_KEY = "ts"
WRITER_ROLE = "flightrec_writer"
READER_ROLE = "flightrec_reader"
VERSION_TABLE = "flightrec_schema_version"
#: Key of the transaction-scoped advisory lock that serialises concurrent migrators ("flightre" in ASCII).
MIGRATION_LOCK_ID = 0x666C_6967_6874_7265

#: (name suffix, columns, WHERE) of the secondary indexes: audits by request and by function/level, and a partial
#: index for the dashboards' report queries. Time-range scans use the primary key, whose first column is `ts`.
INDEXES: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("request_id_ts_idx", ("request_id", "ts"), None),
    ("fn_level_ts_idx", ("function_name", "level", "ts"), None),
    ("report_fn_ts_idx", ("function_name", "ts"), "kind = 'report'"),
)

_LONGEST_SUFFIX = max(len("_default"), len("_p202611"), *(len(suffix) + 1 for suffix, _, _ in INDEXES))
#: PostgreSQL truncates identifiers to 63 bytes; the table's own name leaves room for its derived names.
MAX_TABLE_NAME_BYTES = 63 - _LONGEST_SUFFIX


def parse_table_name(table: str) -> tuple[str, ...]:
    """Split `LOGS_TABLE` ("logs" or "schema.logs") into its parts, raising ValueError for names we cannot use.

    Parts are taken literally (no case folding, no unquoting) and are quoted wherever they are used, so any
    characters are safe; the name is limited in length so the partition and index names derived from it stay
    distinct instead of being silently truncated by PostgreSQL.
    """
    parts = tuple(table.split("."))
    if len(parts) > 2 or any(not part for part in parts):
        raise ValueError(f"table name {table!r} must be 'name' or 'schema.name'")
    if any("\x00" in part for part in parts):
        raise ValueError("table name must not contain NUL characters")
    if len(parts[0].encode()) > 63:
        raise ValueError(f"schema name {parts[0]!r} is longer than 63 bytes")
    if len(parts[-1].encode()) > MAX_TABLE_NAME_BYTES:
        raise ValueError(f"table name {parts[-1]!r} is longer than {MAX_TABLE_NAME_BYTES} bytes")
    return parts


def month_start(day: date) -> date:
    return date(day.year, day.month, 1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def partition_months(now: datetime | None = None, ahead: int = 1) -> list[date]:
    """The first days of the current month (UTC) and the `ahead` months after it."""
    current = month_start((now or datetime.now(UTC)).astimezone(UTC).date())
    months = [current]
    for _ in range(ahead):
        months.append(next_month(months[-1]))
    return months


class _Names:
    """The quoted names derived from one table name, so every statement spells them the same way."""

    def __init__(self, table: str) -> None:
        from psycopg import sql

        parts = parse_table_name(table)
        self.schema: str | None = parts[0] if len(parts) == 2 else None
        self.relname = parts[-1]
        self.table = sql.Identifier(*parts)
        self.version_table = self.sibling(VERSION_TABLE)
        self.default = self.sibling(f"{self.relname}_default")

    def sibling(self, name: str) -> sql.Identifier:
        """A relation in the table's schema (or, like the table, in the search path's first schema)."""
        from psycopg import sql

        return sql.Identifier(self.schema, name) if self.schema is not None else sql.Identifier(name)

    @staticmethod
    def regclass(identifier: sql.Identifier) -> sql.Literal:
        """The quoted name as a text literal, for `to_regclass()`: quoting keeps its case and characters."""
        from psycopg import sql

        return sql.Literal(identifier.as_string())


def _do(body: sql.Composable, declare: str = "") -> sql.Composed:
    """A DO block around `body`, with a dollar-quote tag that cannot occur in it (names may contain `$`)."""
    from psycopg import sql

    text = body.as_string()
    tag = "$flightrec$"
    n = 0
    while tag in text:
        n += 1
        tag = f"$flightrec{n}$"
    head = f"DO {tag}\n" + (f"DECLARE {declare}\n" if declare else "") + "BEGIN\n"
    return sql.Composed([sql.SQL(head), body, sql.SQL(f"\nEND\n{tag}")])


def _column_defs() -> sql.Composed:
    from psycopg import sql

    return sql.SQL(",\n    ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(col.name), sql.SQL(col.sql_type), sql.SQL(" NOT NULL" if col.not_null else "")
        )
        for col in COLUMNS
    )


def _partition_sql(n: _Names, month: date) -> sql.Composed:
    """Create the month's partition unless it exists, moving its rows out of the default partition first."""
    from psycopg import sql

    part = n.sibling(f"{n.relname}_p{month:%Y%m}")
    low = sql.Literal(f"{month.isoformat()} 00:00:00+00")
    high = sql.Literal(f"{next_month(month).isoformat()} 00:00:00+00")
    return _do(
        sql.SQL(
            "  IF to_regclass({part_name}) IS NULL THEN\n"
            "    CREATE TABLE {part} (LIKE {table} INCLUDING DEFAULTS);\n"
            "    WITH moved AS (DELETE FROM {default} WHERE {key} >= {low} AND {key} < {high} RETURNING *)\n"
            "      INSERT INTO {part} SELECT * FROM moved;\n"
            "    ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES FROM ({low}) TO ({high});\n"
            "  END IF;"
        ).format(
            part_name=n.regclass(part), part=part, table=n.table, default=n.default,
            key=sql.Identifier(PARTITION_KEY), low=low, high=high,
        )
    )  # fmt: skip


def partition_sql(table: str, months: Sequence[date]) -> list[str]:
    """Statements that create the monthly partitions of `months` (first days) unless they exist, each taking over
    its month's rows from the default partition: for a maintenance command that creates partitions ahead."""
    n = _Names(table)
    return [_partition_sql(n, month_start(month)).as_string() for month in months]


def migration_sql(table: str, now: datetime | None = None) -> list[str]:
    """The statements that create or upgrade `table` (idempotent; run them in one transaction, in order).

    `now` picks the monthly partitions (its month and the next). An unqualified table lives in the first schema
    of the search path, as any unqualified CREATE TABLE would.
    """
    from psycopg import sql

    n = _Names(table)
    table_lit = sql.Literal(n.relname)
    statements: list[sql.Composable] = [
        sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(MIGRATION_LOCK_ID)),
    ]
    if n.schema is not None:
        statements.append(
            _do(sql.SQL("  IF to_regnamespace({lit}) IS NULL THEN\n    CREATE SCHEMA {schema};\n  END IF;").format(
                lit=sql.Literal(sql.Identifier(n.schema).as_string()), schema=sql.Identifier(n.schema)
            ))
        )  # fmt: skip
    statements += [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (\n"
            "    table_name text PRIMARY KEY,\n"
            "    version integer NOT NULL,\n"
            "    migrated_at timestamptz NOT NULL DEFAULT now()\n"
            ")"
        ).format(n.version_table),
        _do(
            sql.SQL(
                "  IF (SELECT version FROM {vt} WHERE table_name = {tl}) > {v} THEN\n"
                "    RAISE EXCEPTION 'flightrec: table % is at schema version %, newer than this flightrec (%)',\n"
                "      {tl}, (SELECT version FROM {vt} WHERE table_name = {tl}), {v}\n"
                "      USING ERRCODE = 'object_not_in_prerequisite_state';\n"
                "  END IF;\n"
                "  IF EXISTS (SELECT FROM pg_class WHERE oid = to_regclass({name}) AND relkind <> 'p') THEN\n"
                "    RAISE EXCEPTION 'flightrec: % exists but is not a partitioned table; rename it or choose another"
                " LOGS_TABLE', {name} USING ERRCODE = 'wrong_object_type';\n"
                "  END IF;"
            ).format(vt=n.version_table, tl=table_lit, v=sql.Literal(SCHEMA_VERSION), name=n.regclass(n.table))
        ),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {table} (\n    {columns},\n    PRIMARY KEY ({pk})\n) PARTITION BY RANGE ({key})"
        ).format(
            table=n.table, columns=_column_defs(),
            pk=sql.SQL(", ").join(map(sql.Identifier, PRIMARY_KEY)), key=sql.Identifier(PARTITION_KEY),
        ),
        # Upgrade path: columns that a newer COLUMNS added (always nullable) join an older table.
        _do(
            sql.SQL(
                "  FOR c IN SELECT v.name, v.type FROM (VALUES {values}) AS v(name, type)\n"
                "      WHERE NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass({name})"
                " AND attname = v.name AND NOT attisdropped)\n"
                "  LOOP\n"
                "    EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', {name}, c.name, c.type);\n"
                "  END LOOP;"
            ).format(
                values=sql.SQL(", ").join(
                    sql.SQL("({}, {})").format(sql.Literal(col.name), sql.Literal(col.sql_type))
                    for col in COLUMNS
                    if not col.not_null
                ),
                name=n.regclass(n.table),
            ),
            declare="c record;",
        ),
        _do(sql.SQL("  IF to_regclass({name}) IS NULL THEN\n    CREATE TABLE {default} PARTITION OF {table} DEFAULT;\n"
                    "  END IF;").format(name=n.regclass(n.default), default=n.default, table=n.table)),
    ]  # fmt: skip
    for suffix, columns, where in INDEXES:
        index = n.sibling(f"{n.relname}_{suffix}")
        create = sql.SQL("CREATE INDEX {index} ON {table} ({columns}){where};").format(
            index=sql.Identifier(f"{n.relname}_{suffix}"), table=n.table,
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            where=sql.SQL(f" WHERE {where}") if where else sql.SQL(""),
        )  # fmt: skip
        statements.append(
            _do(sql.SQL("  IF to_regclass({name}) IS NULL THEN\n    {create}\n  END IF;").format(
                name=n.regclass(index), create=create
            ))
        )  # fmt: skip
    statements += [_partition_sql(n, month) for month in partition_months(now)]
    for role in (WRITER_ROLE, READER_ROLE):
        statements.append(
            _do(
                sql.SQL(
                    "  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN\n"
                    "    BEGIN\n"
                    "      CREATE ROLE {role} NOLOGIN;\n"
                    "    EXCEPTION WHEN duplicate_object THEN NULL;  -- a migrator of another database won the race\n"
                    "    END;\n"
                    "  END IF;"
                ).format(lit=sql.Literal(role), role=sql.Identifier(role))
            )
        )
    roles = sql.SQL(", ").join([sql.Identifier(WRITER_ROLE), sql.Identifier(READER_ROLE)])
    if n.schema is not None:
        statements.append(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(n.schema), roles))
    else:
        statements.append(_do(sql.SQL(
            f"  EXECUTE format('GRANT USAGE ON SCHEMA %I TO {WRITER_ROLE}, {READER_ROLE}', current_schema());"
        )))  # fmt: skip
    statements += [
        sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(n.table),
        sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON TABLE {} FROM {}").format(n.table, roles),
        sql.SQL("GRANT INSERT ON TABLE {} TO {}").format(n.table, sql.Identifier(WRITER_ROLE)),
        sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(n.table, sql.Identifier(READER_ROLE)),
        sql.SQL(
            "INSERT INTO {vt} AS v (table_name, version) VALUES ({tl}, {v})\n"
            "ON CONFLICT (table_name) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()\n"
            "WHERE v.version <> EXCLUDED.version"
        ).format(vt=n.version_table, tl=table_lit, v=sql.Literal(SCHEMA_VERSION)),
    ]
    return [statement.as_string() for statement in statements]


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What one `migrate` call found and changed, for `flightrec migrate` to print."""

    table: str
    previous_version: int | None  # None: the table did not exist
    version: int
    created_partitions: tuple[str, ...]
    created_roles: tuple[str, ...]

    @property
    def created(self) -> bool:
        return self.previous_version is None

    @property
    def changed(self) -> bool:
        return self.previous_version != self.version or bool(self.created_partitions or self.created_roles)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int | None
    partitions: frozenset[str]
    roles: frozenset[str]


def _snapshot(conn: psycopg.Connection[Any], n: _Names) -> _Snapshot:
    table_name = n.table.as_string()
    version_name = n.version_table.as_string()
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL,"
        " ARRAY(SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        "       WHERE i.inhparent = to_regclass(%s)),"
        " ARRAY(SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%s))",
        [table_name, version_name, table_name, [WRITER_ROLE, READER_ROLE]],
    ).fetchone()
    assert row is not None
    table_exists, version_exists, partitions, roles = row
    version: int | None = None
    if table_exists:
        version = 0  # a table from before the bookkeeping existed
        if version_exists:
            from psycopg import sql

            found = conn.execute(
                sql.SQL("SELECT version FROM {} WHERE table_name = %s").format(n.version_table), [n.relname]
            ).fetchone()
            version = int(found[0]) if found else 0
    return _Snapshot(version, frozenset(partitions), frozenset(roles))


def migrate(conn: psycopg.Connection[Any], table: str, now: datetime | None = None) -> MigrationResult:
    """Create or upgrade `table` in one transaction, serialised against concurrent migrators.

    Works on an autocommit connection and through PgBouncer in transaction mode (one transaction, a
    transaction-scoped advisory lock, no session state). Database errors propagate as psycopg exceptions.
    """
    n = _Names(table)
    statements = migration_sql(table, now)
    with conn.transaction():
        conn.execute(statements[0])  # the advisory lock, before looking at anything
        before = _snapshot(conn, n)
        for statement in statements[1:]:
            conn.execute(statement)
        after = _snapshot(conn, n)
    return MigrationResult(
        table=table,
        previous_version=before.version,
        version=after.version if after.version is not None else SCHEMA_VERSION,
        created_partitions=tuple(sorted(after.partitions - before.partitions)),
        created_roles=tuple(role for role in (WRITER_ROLE, READER_ROLE) if role in after.roles - before.roles),
    )


#: Column types sent as another array type and cast row by row: casting a whole text[] to jsonb[] happens in the
#: planner and costs about twice as much as casting each row's text in the SELECT list (measured: 180 vs 95 ms
#: for 10,000 records).
WIRE_TYPES = {"jsonb": "text"}


def insert_sql(table: str, columns: Sequence[Column] = COLUMNS) -> str:
    """The sink's one statement: every column a binary array parameter, unnested server-side.

    `ON CONFLICT DO NOTHING` names no conflict target on purpose: a target needs SELECT privilege on its columns,
    which the INSERT-only writer role does not have; the primary key is the table's only unique constraint.
    """
    from psycopg import sql

    def wire(col: Column) -> str:
        return WIRE_TYPES.get(col.sql_type, col.sql_type)

    names = [sql.Identifier(col.name) for col in columns]
    return (
        sql.SQL(
            "INSERT INTO {table} ({names}) SELECT {values} FROM unnest({arrays}) AS u({names}) ON CONFLICT DO NOTHING"
        )
        .format(
            table=sql.Identifier(*parse_table_name(table)),
            names=sql.SQL(", ").join(names),
            values=sql.SQL(", ").join(
                sql.SQL("{}::{}").format(name, sql.SQL(col.sql_type)) if wire(col) != col.sql_type else name
                for name, col in zip(names, columns, strict=True)
            ),
            arrays=sql.SQL(", ").join(sql.SQL("%b::{}[]").format(sql.SQL(wire(col))) for col in columns),
        )
        .as_string()
    )
