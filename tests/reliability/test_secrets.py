"""Secrets: credentials never reach a record, a stdout or stderr line, a posted error or a database row; TLS
verification is on by default for syslog and PostgreSQL, and turning it off is explicit and leaves a warning.

Password authentication, honestly: the test clusters use `trust`, so these tests start a PostgreSQL of their own
(module-scoped), prepend a `scram-sha-256` line for ONE role to its pg_hba.conf and reload it. Every other role
keeps trust; the role under test must present its password, and a wrong one is refused by the server itself.

Already proven elsewhere (referenced, not repeated): event redaction on by default
(integration/test_pipeline_e2e.py::test_secrets_in_the_event_never_reach_syslog and the properties in
unit/telemetry/test_telemetry_redact.py); the sink's own errors without the password (integration/
test_postgres_sink.py::test_no_error_or_log_line_shows_the_password, with nothing listening); `verify-full` for a
remote host without sslmode (unit/telemetry/test_schema.py::test_a_remote_host_without_sslmode_gets_verify_full);
syslog TLS with the wrong CA refused and the verification-off warning at the sink (integration/test_syslog_rsyslog.py
::test_tls_with_the_wrong_ca_fails_verification_and_keeps_the_records, ::test_tls_without_verification_delivers_and_
warns_once).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from telemetry.postgres import unverified_tls
from telemetry.schema import WRITER_ROLE, migrate
from tests.integration.conftest import REPO, emulator
from tests.peers import PeerError, PostgresServer
from tests.reliability.helpers import dropped_counts, rows, wait_for, wait_rows

PASSWORD = "Sup3r-S3cret/pw@x:42%é"
#: every form the password could take in a message: raw, percent-encoded (as in a URL), and a distinctive core
FORMS = (PASSWORD, quote(PASSWORD, safe=""), "Sup3r-S3cret")


def _leaks(*texts: object) -> list[str]:
    joined = "\n".join(str(t) for t in texts)
    return [form for form in FORMS if form in joined]


@pytest.fixture(scope="module")
def password_cluster():
    """A PostgreSQL of this module's own (its pg_hba.conf is edited), shared by its tests."""
    try:
        server = PostgresServer().start()
    except PeerError as exc:
        pytest.fail(f"PostgreSQL did not start: {exc}", pytrace=False)
    yield server
    server.close()


@pytest.fixture
def password_pg(password_cluster):
    """(server, dbname, role): a migrated `logs` table, and a login role in `flightrec_writer` whose connections
    from 127.0.0.1 must authenticate with scram-sha-256 and PASSWORD."""
    pg = password_cluster
    role = f"pw_{uuid.uuid4().hex[:8]}"
    dsn = pg.create_database()
    dbname = dsn.rsplit("/", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, "logs")
    pg.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
        sql.Identifier(role), sql.Literal(PASSWORD), sql.Identifier(WRITER_ROLE)))
    hba = pg.data_dir / "pg_hba.conf"
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    pg.execute("SELECT pg_reload_conf()")
    # the server really asks this role for its password now
    wait_for(lambda: _refused(pg, dbname, role), 10)
    assert _refused(pg, dbname, role), "pg_hba.conf reload did not take effect"
    return pg, dbname, role


def _refused(pg, dbname: str, role: str) -> bool:
    try:
        psycopg.connect(f"host=127.0.0.1 port={pg.port} dbname={dbname} user={role} password=wrong",
                        connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return "password authentication failed" in str(exc)
    return False


def _everything(emu) -> list[str]:
    """Every line the runtime wrote, every body and header it posted, and every platform line."""
    out = [line for _, line in emu.output]
    for post in emu.posts:
        out.append(post.body.decode("utf-8", "replace"))
        out.extend(f"{k}: {v}" for k, v in post.headers)
    out.extend(emu.test_platform_lines)
    return out


def test_a_refused_database_login_never_shows_the_password(password_pg):
    """The wrong password, in a URL (percent-encoded) and in a key=value DSN. PostgreSQL refuses the login; the
    refusal reaches stderr (the drop diagnostics quote the sink's last error) and, under LOGS_POLICY=strict, the
    invocation's error message. Nowhere — stdout, stderr, posted bodies and headers, platform lines — is the
    password, in any form. Delivered: 0 rows (refused); the drops are counted, not silent."""
    pg, dbname, role = password_pg
    wrong = PASSWORD[::-1] + "!"  # a wrong password is a secret too
    dsns = [
        f"postgresql://{role}:{quote(wrong, safe='')}@127.0.0.1:{pg.port}/{dbname}",
        f"host=127.0.0.1 port={pg.port} dbname={dbname} user={role} password='{wrong}'",
    ]
    for dsn in dsns:
        env = {"LOGS_DATABASE_URL": dsn, "LOGS_POLICY": "strict", "LOGS_BUFFER_MAX_RECORDS": "1",
               "LOGS_SPILL_MAX_BYTES": "0", "TELEMETRY_FLUSH_BUDGET_MS": "3000", "LOGS_STDOUT_LIFECYCLE": "1"}
        with emulator("handlers.logs.handler", REPO, env=env) as emu:
            refused = emu.invoke({"lines": 1})
            emu.invoke({"lines": 1})
            emu.wait_for_output("log records dropped by the postgres sink")
            everything = _everything(emu)
        assert refused.json()["errorType"] == "Runtime.LogSinkUnavailable"
        refusal = [line for line in everything if "password authentication failed" in line]
        assert refusal, "the refusal itself was never reported"
        assert dropped_counts(everything, "postgres"), "the lost records were not counted"
        for secret in (wrong, quote(wrong, safe=""), wrong[:12]):
            assert secret not in "\n".join(everything), f"the wrong password leaked ({dsn.split(':')[0]})"
        assert _leaks(*everything) == []
    assert pg.execute("SELECT count(*) FROM logs", dbname=dbname) == [(0,)]


def test_the_right_password_stores_rows_and_appears_in_none_of_them(password_pg, task_root):
    """The right password (URL form): every record is stored; no row, stdout or stderr line contains it, even
    though the event carries it under secret keys and the handler's exceptions quote it (`password=…`, `token=…`,
    and a connection URL): all redacted before rendering."""
    pg, dbname, role = password_pg
    root = task_root("leaky", """
        import logging
        from urllib.parse import quote
        def handler(event, context):
            pw = event["password"]
            url = f"postgresql://app:{quote(pw, safe='')}@db.internal/app"
            try:
                raise ConnectionError(f"cannot reach {url} with password={pw}")
            except ConnectionError:
                logging.getLogger("leaky").exception("lost the database")
            raise RuntimeError(f"token={pw} rejected")
    """)
    dsn = f"postgresql://{role}:{quote(PASSWORD, safe='')}@127.0.0.1:{pg.port}/{dbname}"
    with emulator("leaky.handler", root, env={"LOGS_DATABASE_URL": dsn, "LOGS_STDOUT_LIFECYCLE": "1"}) as emu:
        result = emu.invoke({"password": PASSWORD, "nested": {"api_key": PASSWORD}})
        stored = wait_rows(pg.dsn_for(dbname), result.request_id, 5)
        lines = [line for _, line in emu.output]
    assert result.json()["errorType"] == "RuntimeError"
    # the invoker's error response is the function's own answer: it holds what the handler raised (as on AWS)
    assert PASSWORD in result.json()["errorMessage"]
    assert sorted(r["kind"] for r in stored) == sorted(["start", "log", "invocation_error", "end", "report"])
    assert _leaks(*[json.dumps(r["record"], ensure_ascii=False) for r in stored]) == []
    assert _leaks(*lines) == []


def test_a_syslog_url_with_user_info_is_refused_without_echoing_it():
    """Syslog has no authentication in its URL: user info is refused at init (Runtime.InvalidConfiguration),
    and the error (posted, printed on stderr, answered to the invoker) shows `***` instead of it."""
    url = f"tls://alice:{quote(PASSWORD, safe='')}@127.0.0.1:6514"
    with emulator("handlers.echo.handler", REPO, env={"SYSLOG_URL": url}) as emu:
        result = emu.invoke({})
        everything = _everything(emu)
    assert result.json()["errorType"] == "Runtime.InvalidConfiguration"
    assert "SYSLOG_URL" in result.json()["errorMessage"] and "tls://***@127.0.0.1:6514" in result.json()["errorMessage"]
    assert _leaks(result.body.decode(), *everything) == []


# -- TLS: syslog ------------------------------------------------------------------------------------------------------
def test_syslog_tls_verifies_certificates_by_default_and_turning_it_off_is_explicit_and_warned(rsyslog):
    """Against rsyslog's self-signed TLS input, through the real bootstrap. Default (system CAs): the handshake
    fails, nothing is delivered, and the failure shows in the drop diagnostics. With SYSLOG_CA_FILE: delivered.
    With SYSLOG_TLS_VERIFY=0: delivered, and a warning naming the variable is recorded at init, as a record like any
    other (on stdout and in the syslog server itself, not only on stderr)."""
    outcomes = {}
    for case, extra in {
        "default": {},
        "private CA": {"SYSLOG_CA_FILE": str(rsyslog.ca_file)},
        "verification off": {"SYSLOG_TLS_VERIFY": "0"},
    }.items():
        name = f"tls-{uuid.uuid4().hex[:8]}"
        env = {"SYSLOG_URL": rsyslog.tls_url, **extra}
        if case == "default":  # no room to wait: what cannot be delivered is dropped at once, with the reason
            env |= {"LOGS_BUFFER_MAX_RECORDS": "1", "LOGS_SPILL_MAX_BYTES": "0"}
        with emulator("handlers.echo.handler", REPO, env=env, function_name=name) as emu:
            result = emu.invoke({})
            assert result.ok  # a sink failing never fails the invocation
            if case == "default":
                emu.wait_for_output("dropped by the syslog sink", timeout_s=5)
            else:
                rsyslog.wait_for(3, where=lambda m, name=name: m["app_name"] == name)
            lines = [line for _, line in emu.output]
        time.sleep(0.2)
        outcomes[case] = ([m for m in rsyslog.messages() if m["app_name"] == name], lines)
    delivered, lines = outcomes["default"]
    assert delivered == []
    assert any("CERTIFICATE_VERIFY_FAILED" in line for line in lines), lines
    assert not any("SYSLOG_TLS_VERIFY" in line for line in lines)
    delivered, lines = outcomes["private CA"]
    assert [m["msgid"] for m in delivered] == ["start", "end", "report"]
    assert not any("SYSLOG_TLS_VERIFY" in line for line in lines)
    delivered, lines = outcomes["verification off"]
    assert [m["msgid"] for m in delivered] == ["log", "start", "end", "report"]
    assert "SYSLOG_TLS_VERIFY is off" in delivered[0]["msg"]
    (warning,) = [line for line in lines if "SYSLOG_TLS_VERIFY is off" in line]
    assert json.loads(warning)["level"] == "WARNING"  # a JSON record on stdout, not logging's bare stderr line


# -- TLS: PostgreSQL --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dsn", "warned"), [
    ("postgresql://app:pw@db.example.com/logs", False),  # no sslmode: verify-full is added
    ("postgresql://app:pw@db.example.com/logs?sslmode=verify-full", False),
    ("postgresql://app:pw@db.example.com/logs?sslmode=require", True),
    ("postgresql://app:pw@db.example.com/logs?sslmode=verify-ca", True),
    ("host=10.1.2.3 dbname=logs user=app password=pw sslmode=disable", True),
    ("host=127.0.0.1,db.example.com dbname=logs sslmode=prefer", True),  # one remote host is enough
    ("postgresql://app:pw@127.0.0.1/logs?sslmode=disable", False),  # loopback: nothing to authenticate
    ("host=/var/run/postgresql dbname=logs sslmode=disable", False),  # a socket
    ("postgresql://app:pw@[::1]/logs?sslmode=allow", False),
])
def test_an_sslmode_that_does_not_authenticate_a_remote_server_is_named(dsn, warned):
    """Unit level: `unverified_tls` says why a DSN leaves a remote server unauthenticated (the sink logs it once, as
    a record of its own), and never quotes the password."""
    reason = unverified_tls(dsn)
    assert (reason is not None) == warned, reason
    if reason:
        assert "sslmode=" in reason and "pw" not in reason.replace("path", "")


def test_postgresql_tls_is_verify_full_by_default_and_a_weaker_sslmode_leaves_a_warning_record(pg_db):
    """End to end, with a host name that is not loopback (`host=db.example.com hostaddr=127.0.0.1`: libpq connects
    to 127.0.0.1 without DNS, and verifies as for db.example.com). Without sslmode the runtime demands verify-full:
    the test server has no TLS, so nothing is stored and the refusal is on stderr. With an explicit
    sslmode=disable the rows are stored, and a WARNING record naming the weak sslmode is among them."""
    _, _, rest = pg_db.partition("@")
    hostport, _, dbname = rest.partition("/")
    port = hostport.rsplit(":", 1)[1]
    base = f"host=db.example.com hostaddr=127.0.0.1 port={port} dbname={dbname} user=postgres"
    env_common = {"LOGS_AUTO_MIGRATE": "1", "LOGS_STDOUT_LIFECYCLE": "1"}
    no_room = {"LOGS_BUFFER_MAX_RECORDS": "1", "LOGS_SPILL_MAX_BYTES": "0"}  # drop at once, saying why
    with emulator("handlers.echo.handler", REPO, env={"LOGS_DATABASE_URL": base, **env_common, **no_room}) as emu:
        refused = emu.invoke({})
        emu.wait_for_output("dropped by the postgres sink", timeout_s=10)
        refused_lines = [line for _, line in emu.output]
    assert refused.ok
    assert rows(pg_db, refused.request_id) == []
    assert any("SSL" in line and "dropped by the postgres sink" in line for line in refused_lines), refused_lines
    with emulator("handlers.echo.handler", REPO,
                  env={"LOGS_DATABASE_URL": f"{base} sslmode=disable", **env_common}) as emu:
        stored = emu.invoke({})
        found = wait_rows(pg_db, stored.request_id, 3)
        warning = wait_rows(pg_db, None, 1)
        stdout = [line for stream, line in emu.output if stream == "stdout"]
    assert [r["kind"] for r in found] == ["start", "end", "report"]
    assert len(warning) == 1 and warning[0]["level"] == "WARNING"
    assert "sslmode=disable for the PostgreSQL host db.example.com" in warning[0]["message"]
    assert any("sslmode=disable" in line for line in stdout)


def test_the_spill_directory_is_private_to_the_runtime(tmp_path, task_root):
    """Records waiting in the spill may hold whatever the function logged: the directory is created 0700."""
    spill = tmp_path / "spill"
    root = task_root("spills", """
        import logging
        def handler(event, context):
            logging.getLogger("spills").info("kept on disk while the sink is down")
            return "ok"
    """)
    env = {"SYSLOG_URL": "tcp://127.0.0.1:9", "LOGS_SPILL_DIR": str(spill), "LOGS_BUFFER_MAX_RECORDS": "1"}
    with emulator("spills.handler", root, env=env) as emu:
        assert emu.invoke({}).ok
        assert wait_for(lambda: any(spill.glob("syslog-*.spill")), 5)
        mode = spill.stat().st_mode & 0o777
        files = list(spill.glob("syslog-*.spill"))
    assert mode == 0o700, oct(mode)
    assert files and all(Path(f).stat().st_size > 0 for f in files)
