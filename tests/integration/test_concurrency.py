"""Managed Instances concurrency end to end: the real bootstrap with AWS_LAMBDA_MAX_CONCURRENCY under the emulator,
N invocations in flight at once, and the rows they leave in PostgreSQL; and tenants, audited per tenant.

The handler meets the other invocations at a barrier between its log lines, so the test fails (a broken barrier)
unless N invocations really run at once, and their records interleave in the one log pipeline.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from tests.integration.conftest import emulator

N = 4

CONCURRENT = """
    import logging, os, threading
    log = logging.getLogger("app")
    barrier = threading.Barrier(4, timeout=10)

    def handler(event, context):
        for step in range(3):
            barrier.wait()
            log.info("step %d of %s", step, context.aws_request_id)
            print(f"print {step} of {context.aws_request_id}")
        return {"request_id": context.aws_request_id, "xray": context.xray_trace_id,
                "env_trace": os.environ.get("_X_AMZN_TRACE_ID"), "thread": threading.current_thread().name,
                "tenant": context.tenant_id}
"""

TENANTS = """
    import logging
    log = logging.getLogger("app")

    def handler(event, context):
        log.info("order %s for %s", event["order"], context.tenant_id)
        return {"tenant": context.tenant_id}
"""


def _env(dsn: str, **extra: str) -> dict[str, str]:
    return {"LOGS_DATABASE_URL": dsn, "LOGS_AUTO_MIGRATE": "1", **extra}


def _rows(dsn: str, where: str = "TRUE", params: tuple = ()) -> list[dict]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('logs')").fetchone()[0] is None:
            return []
        cur = conn.execute(
            "SELECT request_id, xray_trace_id, tenant_id, kind, message, status, record FROM logs "
            f"WHERE {where} ORDER BY ts, record_id", params)  # `where`: the tests' own fixed clauses
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _wait_rows(dsn: str, n: int, timeout_s: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    rows = _rows(dsn)
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = _rows(dsn)
    return rows


def test_concurrent_invocations_interleave_and_every_row_is_attributed_to_its_own(task_root, pg_db):
    # GIVEN a function with AWS_LAMBDA_MAX_CONCURRENCY=4 whose handler needs 4 invocations in flight at once
    root = task_root("app", CONCURRENT)
    with emulator("app.handler", root, env=_env(pg_db, AWS_LAMBDA_MAX_CONCURRENCY=str(N)), timeout_s=20) as emu:
        # WHEN 4 invocations arrive together
        with ThreadPoolExecutor(N) as pool:
            results = list(pool.map(lambda i: emu.invoke({"i": i}, tenant_id=f"tenant-{i % 2}"), range(N)))
        assert all(r.ok for r in results), [r.body for r in results]
        answers = {r.request_id: r.json() for r in results}
        rows = _wait_rows(pg_db, N * 9)

    # THEN they ran at once, each on its own worker thread, and each handler saw its own ids on its context
    assert len({a["thread"] for a in answers.values()}) == N
    assert all(a["request_id"] == rid for rid, a in answers.items())
    assert len({a["xray"] for a in answers.values()}) == N and all(a["xray"] for a in answers.values())
    # AND the process environment was left alone: one variable cannot name four invocations
    assert all(a["env_trace"] is None for a in answers.values())
    # AND every row (start, 3 log lines, 3 print lines, end, report per invocation) names its own invocation
    assert len(rows) == N * 9
    for row in rows:
        answer = answers[row["request_id"]]
        assert (row["xray_trace_id"], row["tenant_id"]) == (answer["xray"], answer["tenant"])
        if row["kind"] == "log":
            assert row["message"].endswith(f"of {row['request_id']}"), row["message"]
            assert row["message"].split(" of ")[0] in {f"{w} {s}" for w in ("step", "print") for s in range(3)}
    for rid in answers:
        kinds = sorted(r["kind"] for r in rows if r["request_id"] == rid)
        assert kinds == sorted(["start", *["log"] * 6, "end", "report"])
    # AND the log lines of different invocations did interleave: all four wrote step 0 before any wrote step 1
    order = [r["request_id"] for r in rows if r["kind"] == "log"]
    assert set(order[: 2 * N]) == set(answers)
    # AND exactly one of the four was the cold start
    reports = [r for r in rows if r["kind"] == "report"]
    assert sum(r["record"]["cold_start"] for r in reports) == 1


def test_a_multi_tenant_function_can_be_audited_per_tenant(task_root, pg_db):
    # GIVEN invocations for three tenants (and one without a tenant)
    root = task_root("app", TENANTS)
    tenants = ["acme", "globex", "acme", "initech", None, "globex", "acme"]
    with emulator("app.handler", root, env=_env(pg_db)) as emu:
        results = [emu.invoke({"order": n}, tenant_id=tenant) for n, tenant in enumerate(tenants)]
        assert all(r.ok for r in results)
        rows = _wait_rows(pg_db, 4 * len(tenants))

    # THEN each tenant's rows are exactly its invocations' records: start, the log line, end, report
    assert [r.json()["tenant"] for r in results] == tenants
    by_request = {r.request_id: tenant for r, tenant in zip(results, tenants, strict=True)}
    for row in rows:
        assert row["tenant_id"] == by_request[row["request_id"]]
    for tenant in ("acme", "globex", "initech"):
        audited = _rows(pg_db, "tenant_id = %s", (tenant,))
        expected = [rid for rid, t in by_request.items() if t == tenant]
        assert sorted({r["request_id"] for r in audited}) == sorted(expected)
        assert len(audited) == 4 * len(expected)
        assert {r["kind"] for r in audited} == {"start", "log", "end", "report"}
        assert all(r["message"].endswith(f"for {tenant}") for r in audited if r["kind"] == "log")
        # the report row carries the tenant in its JSON too, for audits that read the record
        assert all(r["record"]["tenant_id"] == tenant for r in audited)
    assert all(r["tenant_id"] is None for r in _rows(pg_db, "request_id = %s", (results[4].request_id,)))
