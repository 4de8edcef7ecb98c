"""The syslog audit recipes of dashboards/README.md, run as written, against the rsyslog the tests use.

- the rsyslog configuration (store each record as a JSON line; route one request id, matched on the parsed
  structured data, to a file of its own) runs in a private rsyslogd, taken from the README text with only its
  port, its paths and the request id substituted;
- the two jq commands run through `sh -c` on what rsyslog wrote: the configuration's JSON lines, and the shared
  `rsyslog` fixture's JSON messages.

The records come from the real runtime (bootstrap under the emulator, `SYSLOG_URL`) for the jq recipes. The
per-request filter needs its request id in the configuration before rsyslogd starts, and the emulator assigns
request ids itself, so that part sends records of a chosen request id through the real syslog sink
(`SyslogHandler`, the same formatter and framing the runtime uses).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.emulator import Emulator
from telemetry.config import TelemetryConfig
from telemetry.context import LogContext
from telemetry.records import EventFormatter
from telemetry.spill import PendingBuffer
from telemetry.syslog import SyslogHandler
from tests.peers import RsyslogServer
from tests.peers.ports import free_port, port_accepts, require_binary, terminate

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "dashboards" / "README.md").read_text()
SD_ID = "lambda@32473"
HANDLER = """
import logging

log = logging.getLogger("audit")


class PaymentDeclined(Exception):
    pass


def handler(event, context):
    log.info("charging order %s", event["order"])
    log.warning("slow card network", extra={"order": event["order"]})
    if event.get("decline"):
        raise PaymentDeclined("card declined")
    return {"charged": event["order"]}
"""
OK_KINDS = ["start", "log", "log", "end", "report"]
DECLINED_KINDS = ["start", "log", "log", "invocation_error", "end", "report"]


def recipe(name: str) -> str:
    """The code block that follows `<!-- recipe:NAME -->` in dashboards/README.md."""
    match = re.search(rf"<!-- recipe:{name} -->\n```[a-z]*\n(.*?)\n```", README, re.S)
    assert match, f"recipe {name} is missing from dashboards/README.md"
    return match.group(1)


def jq_binary() -> str:
    found = shutil.which("jq")
    if found is None:
        pytest.fail("jq is not installed (apt-get install jq); the README's audit recipes need it", pytrace=False)
    return found


def run_jq_recipe(name: str, request_id: str, file: Path) -> list[dict[str, Any]]:
    """Run the README's jq command on `file` for `request_id`; the records it prints, in its order."""
    jq_binary()
    command = recipe(name).replace("/var/log/flightrec/records.jsonl", str(file)).replace("messages.jsonl", str(file))
    result = subprocess.run(["sh", "-c", command], env={"PATH": "/usr/bin:/bin", "REQUEST_ID": request_id},
                            capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


class RecipeRsyslog:
    """rsyslogd running the README's configuration, on a free port, writing under `log_dir`."""

    def __init__(self, base: Path, request_id: str) -> None:
        self.base = base
        self.port = free_port()
        self.log_dir = base / "log"
        (base / "work").mkdir(parents=True)
        body = (
            recipe("rsyslog")
            .replace('port="601"', f'address="127.0.0.1" port="{self.port}"')
            .replace("/var/log/flightrec", str(self.log_dir))
            .replace("REQUEST-ID", request_id)
        )
        # The README tells to raise maxMessageSize in the main configuration: this file is the main one here.
        self.config = base / "rsyslog.conf"
        self.config.write_text(
            f'global(workDirectory="{base}/work" maxMessageSize="64k" net.enableDNS="off")\n{body}\n'
        )
        self.binary = require_binary("rsyslogd", search=("/usr/sbin", "/sbin"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RecipeRsyslog:
        check = subprocess.run([self.binary, "-N1", "-f", str(self.config)], capture_output=True, text=True,
                               check=False)  # fmt: skip
        assert check.returncode == 0, f"the README's rsyslog configuration does not load:\n{check.stderr}"
        with (self.base / "stdout.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-n", "-f", str(self.config), "-i", str(self.base / "rsyslogd.pid")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while not port_accepts(self.port):
            assert self.proc.poll() is None, (self.base / "stdout.log").read_text()
            assert time.monotonic() < deadline, "rsyslogd did not listen within 10 s"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, signal.SIGTERM)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def lines(self, name: str) -> list[dict[str, Any]]:
        path = self.log_dir / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def task_root(tmp_path: Path) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    (root / "audit_handler.py").write_text(HANDLER)
    return root


def invoke_orders(root: Path, syslog_url: str, function: str) -> tuple[str, str]:
    """Two invocations through the real runtime: one charged, one declined. Their request ids."""
    env = {"SYSLOG_URL": syslog_url, "LOGS_STDOUT": "0", "SYSLOG_APP_NAME": function}
    with Emulator(handler="audit_handler.handler", task_root=root, function_name=function, env=env,
                  capture_output=True, platform_sink=lambda line: None) as emu:  # fmt: skip
        charged = emu.invoke({"order": "o-1"})
        declined = emu.invoke({"order": "o-2", "decline": True})
    assert charged.function_error is None and declined.function_error is not None
    return charged.request_id or "", declined.request_id or ""


def assert_one_request(records: list[dict[str, Any]], request_id: str, kinds: list[str], function: str) -> None:
    assert [r["kind"] for r in records] == kinds
    assert {r["request_id"] for r in records} == {request_id}
    assert {r["function_name"] for r in records} == {function}
    sequence = [int(r["record_id"].rsplit("/", 1)[1]) for r in records]
    assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)


@pytest.fixture
def recipe_rsyslog(tmp_path: Path) -> Iterator[tuple[RecipeRsyslog, str]]:
    chosen = f"req-{uuid.uuid4()}"
    server = RecipeRsyslog(tmp_path / "rsyslog", chosen).start()
    try:
        yield server, chosen
    finally:
        server.stop()


def test_readme_rsyslog_config_stores_records_and_jq_finds_one_request(
    recipe_rsyslog: tuple[RecipeRsyslog, str], task_root: Path
) -> None:
    server, _ = recipe_rsyslog
    charged, declined = invoke_orders(task_root, server.url, "orders-syslog")

    def stored() -> bool:
        ids = [(r["request_id"], r["kind"]) for r in server.lines("records.jsonl")]
        return (charged, "report") in ids and (declined, "report") in ids

    wait_for(stored, 30, "rsyslog to store both invocations' records")
    for request_id, kinds in ((charged, OK_KINDS), (declined, DECLINED_KINDS)):
        records = run_jq_recipe("jq-records", request_id, server.log_dir / "records.jsonl")
        assert_one_request(records, request_id, kinds, "orders-syslog")
    declined_records = run_jq_recipe("jq-records", declined, server.log_dir / "records.jsonl")
    assert declined_records[-1]["error_type"] == "PaymentDeclined"
    assert declined_records[-1]["status"] == "error"
    assert run_jq_recipe("jq-records", "no-such-request", server.log_dir / "records.jsonl") == []


def test_readme_rsyslog_filter_routes_one_request_id_to_its_own_file(
    recipe_rsyslog: tuple[RecipeRsyslog, str], task_root: Path
) -> None:
    server, chosen = recipe_rsyslog
    # Records of the chosen request and of another one, through the real syslog sink, in one batch.
    formatter = EventFormatter({"function_name": "orders-syslog", "function_version": "3"}, "instance-1")
    batch = []
    for seq, request_id in enumerate([chosen, "req-other", chosen, "req-other", chosen]):
        record = logging.LogRecord("audit", logging.INFO, __file__, 1, f"record {seq} of {request_id}", (), None)
        record.flightrec = LogContext(request_id=request_id, cold_start=False)
        record.flightrec_seq = seq
        batch.append(formatter.render(record))
    sink = SyslogHandler(TelemetryConfig(syslog_url=server.url), PendingBuffer("recipe", max_items=100))
    for rendered in batch:
        sink.accept(rendered)
    assert sink.ship(time.monotonic() + 10)
    # And the real runtime's records of two other requests, which the filter must leave out.
    invoke_orders(task_root, server.url, "orders-syslog")

    wait_for(lambda: len(server.lines("records.jsonl")) >= 5 + len(OK_KINDS) + len(DECLINED_KINDS), 30,
             "rsyslog to store every record")  # fmt: skip
    routed = server.lines("request.jsonl")
    assert [r["record_id"] for r in routed] == [f"{chosen}/0", f"{chosen}/2", f"{chosen}/4"]
    assert [r["message"] for r in routed] == [f"record {n} of {chosen}" for n in (0, 2, 4)]


def test_jq_over_the_test_rsyslogs_json_messages(rsyslog: RsyslogServer, task_root: Path) -> None:
    charged, declined = invoke_orders(task_root, rsyslog.tcp_url, "orders-fixture")

    def of(request_id: str) -> Any:
        def where(message: dict[str, Any]) -> bool:
            sd = message.get("sd")
            return isinstance(sd, dict) and sd.get(SD_ID, {}).get("requestId") == request_id

        return where

    rsyslog.wait_for(len(OK_KINDS), where=of(charged))
    rsyslog.wait_for(len(DECLINED_KINDS), where=of(declined))
    for request_id, kinds in ((charged, OK_KINDS), (declined, DECLINED_KINDS)):
        records = run_jq_recipe("jq-messages", request_id, rsyslog.output_path)
        assert_one_request(records, request_id, kinds, "orders-fixture")
        # The same records the runtime sent, in the same order as the fixture received them, sorted by time.
        received = [json.loads(m["msg"]) for m in rsyslog.messages() if of(request_id)(m)]
        assert records == sorted(received, key=lambda r: (r["timestamp"], int(r["record_id"].rsplit("/", 1)[1])))
