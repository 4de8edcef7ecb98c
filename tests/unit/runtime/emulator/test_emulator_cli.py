"""`flightrec` / `python -m runtime`: the lazy subcommand table, `invoke` and `emulator`."""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli import SUBCOMMANDS, Subcommand, main

REPO = Path(__file__).resolve().parents[4]

ECHO_RUNTIME = r"""
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    response = conn.getresponse()
    body = response.read()
    request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
    print("log line for", request_id, flush=True)
    kind = "error" if b"fail" in body else "response"
    if kind == "error":
        body = b'{"errorMessage":"failed on purpose","errorType":"Oops"}'
    path = f"/2018-06-01/runtime/invocation/{request_id}/{kind}"
    conn.request("POST", path, body, {"Lambda-Runtime-Function-Error-Type": "Function.Oops"})
    conn.getresponse().read()
"""


def _echo_command() -> str:
    return subprocess.list2cmdline([sys.executable, "-c", ECHO_RUNTIME])


def configure_demo(parser: argparse.ArgumentParser) -> None:
    """A subcommand defined in a test module, loaded through the table like `telemetry`'s will be."""
    parser.add_argument("--name", default="world")
    parser.set_defaults(run=lambda args: 7 if args.name == "seven" else 0)


def test_help_lists_every_subcommand_without_importing_them(capsys: pytest.CaptureFixture[str]) -> None:
    table = {**SUBCOMMANDS, "migrate": Subcommand("no_such_package_xyz.cli:configure", "create or upgrade the table")}
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"], table=table)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("emulator", "invoke", "migrate"):
        assert re.search(rf"^\s+{name}\s+\S", out, re.MULTILINE), out
    assert "create or upgrade the table" in out  # shown although its module does not exist


def test_a_table_entry_is_imported_by_name_when_chosen() -> None:
    table = {"demo": Subcommand(f"{__name__}:configure_demo", "a demo")}
    assert main(["demo", "--name", "seven"], table=table) == 7
    assert main(["demo"], table=table) == 0
    broken = {"migrate": Subcommand("no_such_package_xyz.cli:configure", "x")}
    with pytest.raises(ModuleNotFoundError):
        main(["migrate"], table=broken)


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "emulator" in capsys.readouterr().err


def test_runtime_cli_and_emulator_never_import_telemetry() -> None:
    code = (
        "import sys, runtime.cli, runtime.emulator, runtime.emulator.cli\n"
        "runtime.cli.build_parser('invoke')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('telemetry', 'handlers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


def test_python_dash_m_runtime_mirrors_flightrec() -> None:
    argv = [sys.executable, "-m", "runtime", "--help"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0
    assert "emulator" in done.stdout
    assert "invoke" in done.stdout


def test_invoke_prints_the_body_to_stdout_and_logs_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["invoke", "--handler", "app.handler", "--command", _echo_command(), "--event", '{"a": 1}'])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == '{"a": 1}\n'
    err = captured.err.splitlines()
    rid = err[0].removeprefix("START RequestId: ").removesuffix(" Version: $LATEST")
    assert err[:3] == [f"START RequestId: {rid} Version: $LATEST", f"log line for {rid}", f"END RequestId: {rid}"]
    assert err[3].startswith(f"REPORT RequestId: {rid}\tDuration: ")


def test_invoke_repeat_and_event_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    code = main(["invoke", "--command", _echo_command(), "--event-file", str(event), "--repeat", "3"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.splitlines() == ['{"from": "file"}'] * 3
    reports = [line for line in captured.err.splitlines() if line.startswith("REPORT")]
    assert ["Init Duration" in line for line in reports] == [True, False, False]


def test_invoke_reads_the_event_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"from": "stdin"}')))
    assert main(["invoke", "--command", _echo_command(), "--event-file", "-"]) == 0
    assert capsys.readouterr().out == '{"from": "stdin"}\n'


def test_invoke_exits_1_on_a_function_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["invoke", "--command", _echo_command(), "--event", '{"fail": true}'])
    assert code == 1
    assert json.loads(capsys.readouterr().out) == {"errorMessage": "failed on purpose", "errorType": "Oops"}


@pytest.mark.parametrize(
    "argv",
    [
        ["invoke", "--event", "{}"],  # neither --handler nor --command
        ["invoke", "--handler", "a.b", "--event", "{not json"],
        ["invoke", "--handler", "a.b", "--event-file", "/no/such/file.json"],
        ["invoke", "--handler", "a.b", "--repeat", "0"],
        ["invoke", "--handler", "a.b", "--timeout", "0"],
        ["emulator"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_argparse_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["invoke", "--event", "{}", "--event-file", "x"])  # mutually exclusive
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["invoke", "--env", "NO_EQUALS_SIGN"])
    assert exit_info.value.code == 2


def test_invoke_runs_the_real_bootstrap_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["invoke", "--handler", "handlers.echo.handler", "--task-root", str(REPO), "--event", '{"real": 1}'])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out) == {"real": 1}
    assert "Init Duration" in captured.err


def test_emulator_serves_until_interrupted(tmp_path: Path) -> None:
    # GIVEN `flightrec emulator` on a free port
    argv = [sys.executable, "-m", "runtime", "emulator", "--port", "0", "--handler", "app.handler"]
    argv += ["--command", _echo_command(), "--task-root", str(tmp_path), "--function-name", "served"]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        port = int(re.search(r"'served' on http://127\.0\.0\.1:(\d+)", banner)[1])  # type: ignore[index]
        # WHEN invoked over HTTP like RIE (curl -d '{}' .../2015-03-31/functions/function/invocations)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/2015-03-31/functions/function/invocations", b'{"over": "http"}')
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b'{"over": "http"}')
        assert response.getheader("X-Amz-Function-Error") is None
        conn.request("POST", "/2015-03-31/functions/function/invocations", b'{"fail": 1}')
        response = conn.getresponse()
        assert response.getheader("X-Amz-Function-Error") == "Unhandled"
        response.read()
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    # THEN it stops cleanly on SIGINT, with the platform lines on its stdout
    assert proc.returncode == 0
    assert out.count("START RequestId: ") == 2
