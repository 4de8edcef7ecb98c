"""The deployment zip needs nothing from the development machine: proof by running it somewhere clean.

How clean:
- Built by `flightrec package` for this machine (arch and Python of `.venv`) from `.wheelhouse/`, which `./dev test`
  fills beforehand (`./dev wheelhouse`); pip runs `--isolated --no-index`, so the build reaches no network.
- Unpacked into an empty folder, keeping the zip's Unix modes as Lambda does.
- Run under the emulator by a Python with none of the project's dependencies: a fresh venv (no pip, no system
  site-packages) made from the interpreter `.venv` was made from. The fixture checks that it cannot import them.
- The environment is PATH (that venv's `bin` first, then /usr/bin:/bin) plus the variables Lambda sets; the
  working directory is the unpacked folder. No PYTHONPATH, nothing of the repository or `.venv`.
- A probe handler reports where each dependency was imported from; every one must be under the unpacked `vendor/`.

What is not proved here: Amazon Linux itself, and running a cross-built target (arm64, another Python): those
differ only in the wheels pip picks for the target's tags (`tests/unit/test_package_build.py` checks the tags).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path, PurePosixPath

import psycopg
import pytest

from runtime.emulator import Emulator
from runtime.package import DEV_ONLY, MANIFEST_NAME, WRAPPER_NAME, this_machine
from tests.integration.conftest import REPO

WHEELHOUSE = REPO / ".wheelhouse"
#: Imported by the probe; each must come from the zip's vendor/ (psycopg_binary: psycopg's C implementation).
DEPENDENCIES = ("msgspec", "psycopg", "psycopg_binary", "opentelemetry.sdk", "pythonjsonlogger", "requests",
                "urllib3", "wrapt")

PROBE = '''
    """Reports where the runtime's dependencies were imported from, and logs a marker."""
    import importlib, importlib.metadata, logging, os, sys

    log = logging.getLogger("probe")
    NAMES = {names!r}

    def handler(event, context):
        modules = {{}}
        for name in NAMES:
            module = importlib.import_module(name)
            modules[name] = module.__file__ or next(iter(module.__path__))  # a namespace package has no file
        import psycopg
        for i in range(3):
            log.info("probe %s line %d", event.get("marker"), i)
        return {{
            "modules": modules,
            "psycopg_impl": psycopg.pq.__impl__,
            "propagator_entry_points": sorted(
                ep.name for ep in importlib.metadata.entry_points(group="opentelemetry_propagator")),
            "context_entry_points": sorted(
                ep.name for ep in importlib.metadata.entry_points(group="opentelemetry_context")),
            "sys_path": sys.path,
            "executable": sys.executable,
            "no_site": sys.flags.no_site,
            "runtime_file": sys.modules["runtime"].__file__,
            "env_keys": sorted(os.environ),
        }}
'''


# --- fixtures: a Python without our dependencies, the build, the unpacked zip ----------------------------------
def _base_python() -> Path:
    """The interpreter `.venv` was created from: same version and ABI as the wheels of this machine's target."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (Path(sys.base_prefix) / "bin" / f"python{version}", Path(sys.base_prefix) / "bin" / "python3"):
        if candidate.exists():
            return candidate
    pytest.fail(f"no base interpreter under {sys.base_prefix} to make a clean venv from", pytrace=False)


@pytest.fixture(scope="module")
def clean_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bin/` of a fresh venv without pip or system site-packages; proven unable to import any dependency."""
    venv = tmp_path_factory.mktemp("clean-python")
    subprocess.run([str(_base_python()), "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python3"
    check = ("import importlib.util as u, sys; "
             "sys.exit(sum(u.find_spec(n.split('.')[0]) is not None for n in sys.argv[1:]))")
    found = subprocess.run([str(python), "-c", check, *DEPENDENCIES], env={"PATH": "/usr/bin:/bin"}, check=False)
    if found.returncode != 0:
        pytest.fail(f"{python} can import {found.returncode} of the project's dependencies; the test needs a "
                    "Python that cannot", pytrace=False)
    return venv / "bin"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`flightrec package --layer` for this machine, from the wheelhouse, with handlers/ and the probe."""
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"{WHEELHOUSE} has no wheels: run `./dev wheelhouse` (or `./dev test`, which does it)",
                    pytrace=False)
    work = tmp_path_factory.mktemp("package")
    probe = work / "probe.py"
    probe.write_text(textwrap.dedent(PROBE.format(names=DEPENDENCIES)).lstrip())
    target = this_machine()
    out = work / "dist"
    cmd = [sys.executable, "-m", "runtime", "package", "--arch", target.arch, "--python", target.python,
           "--wheelhouse", str(WHEELHOUSE), "--out", str(out), "--code", str(REPO / "handlers"),
           "--code", str(probe), "--layer"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)  # the size report, shown with `pytest -s`
    assert "function.zip:" in proc.stdout
    assert "unzipped (limit 250.0 MB" in proc.stdout
    return out


def unzip_like_lambda(archive: Path, dest: Path) -> Path:
    """Extract keeping each entry's Unix mode (zipfile's extractall drops it; Lambda keeps it)."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)
    return dest


@pytest.fixture(scope="module")
def task(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """function.zip unpacked into an empty folder: the stand-in for /var/task."""
    return unzip_like_lambda(dist / "function.zip", tmp_path_factory.mktemp("empty") / "task")


def clean_env(clean_bin: Path) -> dict[str, str]:
    return {"PATH": f"{clean_bin}:/usr/bin:/bin"}


def run_probe(command: list[str], task_root: Path, clean_bin: Path, **env: str) -> tuple[dict, Emulator]:
    with Emulator(handler="probe.handler", task_root=task_root, command=command, base_env=clean_env(clean_bin),
                  env=env, capture_output=True, platform_sink=lambda line: None, timeout_s=10.0,
                  init_timeout_s=30.0) as emu:
        result = emu.invoke({"marker": env.get("MARKER", "m")})
        again = emu.invoke({"marker": "second"})
    output = "\n".join(f"{stream}: {line}" for stream, line in emu.output)
    assert result.ok, f"{result.body!r}\n{output}"
    assert again.ok, f"{again.body!r}\n{output}"
    return result.json(), emu


def assert_isolated(report: dict, root: Path, vendor: Path) -> None:
    """Every dependency from `vendor`, the runtime from `root`, nothing from the repository or `.venv`."""
    for name, file in report["modules"].items():
        assert Path(file).resolve().is_relative_to(vendor.resolve()), f"{name} came from {file}, not {vendor}"
    assert report["psycopg_impl"] == "binary"
    assert "contextvars_context" in report["context_entry_points"]  # entry points work: .dist-info was kept
    # AND the project's own entry point (OTEL_PROPAGATORS=xray) is found too: the zip carries its dist-info
    assert {"tracecontext", "baggage", "xray"} <= set(report["propagator_entry_points"])
    assert Path(report["runtime_file"]).resolve().is_relative_to(root.resolve())
    for entry in report["sys_path"]:
        assert not Path(entry).resolve().is_relative_to(REPO), f"{entry} on sys.path is inside the repository"
    assert str(REPO / ".venv") not in report["executable"]


# --- the artifact itself ------------------------------------------------------------------------------------
def test_function_zip_layout_and_modes(dist: Path):
    with zipfile.ZipFile(dist / "function.zip") as zf:
        infos = {i.filename: i for i in zf.infolist()}
        manifest = json.loads(zf.read(MANIFEST_NAME))
    names = set(infos)
    # THEN bootstrap and the wrapper are at the root, executable, recorded as Unix entries
    for name in ("bootstrap", WRAPPER_NAME):
        assert infos[name].create_system == 3
        assert (infos[name].external_attr >> 16) & 0o777 == 0o755
    assert (infos["runtime/loop.py"].external_attr >> 16) & 0o777 == 0o644
    # the runtime ships, its development tools do not
    assert {"runtime/loop.py", "runtime/api_client.py", "telemetry/setup.py", "handlers/hello.py", "probe.py"} <= names
    for dev in DEV_ONLY:
        assert not any(n == dev or n.startswith(dev) for n in names), dev
    # dependencies are vendored with their metadata; pytest and bytecode are not
    assert any(n.startswith("vendor/psycopg_binary/") and ".so" in n for n in names)
    assert any(n.startswith("vendor/opentelemetry_sdk-") and n.endswith(".dist-info/entry_points.txt") for n in names)
    assert not any("pytest" in n or n.endswith(".pyi") for n in names)
    # bytecode: only what package compiled for this interpreter, one .pyc per shipped module
    tag = sys.implementation.cache_tag
    pycs = {n for n in names if n.endswith(".pyc")}
    assert f"vendor/msgspec/__pycache__/__init__.{tag}.pyc" in pycs and f"__pycache__/probe.{tag}.pyc" in pycs
    for pyc in pycs:
        path = PurePosixPath(pyc)
        assert path.parent.name == "__pycache__" and path.name.endswith(f".{tag}.pyc")
        assert (path.parent.parent / path.name.replace(f".{tag}.pyc", ".py")).as_posix() in names
    assert manifest["bytecode"] == tag
    target = this_machine()
    assert manifest["target"]["arch"] == target.arch
    assert manifest["target"]["python"] == target.python
    assert "pytest" not in manifest["distributions"]
    assert {"msgspec", "psycopg", "psycopg-binary", "opentelemetry-sdk", "requests"} <= set(manifest["distributions"])


def test_layer_and_code_zips_split_the_same_content(dist: Path):
    with zipfile.ZipFile(dist / "layer.zip") as zf:
        layer = {i.filename: i for i in zf.infolist()}
    with zipfile.ZipFile(dist / "code.zip") as zf:
        code = set(zf.namelist())
    assert (layer["bootstrap"].external_attr >> 16) & 0o777 == 0o755  # becomes /opt/bootstrap
    assert (layer[WRAPPER_NAME].external_attr >> 16) & 0o777 == 0o755  # becomes /opt/flightrec-wrapper
    assert "python/runtime/loop.py" in layer and "python/msgspec/__init__.py" in layer  # /opt/python
    assert not any(n.startswith(("vendor/", "handlers/")) for n in layer)
    assert "handlers/hello.py" in code and "probe.py" in code
    assert not any(n.startswith(("runtime/", "telemetry/", "vendor/")) or n == "bootstrap" for n in code)


def test_unpacked_bootstrap_keeps_its_executable_bit(task: Path):
    assert os.access(task / "bootstrap", os.X_OK)
    assert os.access(task / WRAPPER_NAME, os.X_OK)


# --- running it ---------------------------------------------------------------------------------------------
def test_unpacked_zip_runs_in_a_clean_environment(task: Path, clean_bin: Path):
    # GIVEN the unpacked zip and a Python without the project's dependencies
    # WHEN Lambda's way of starting a custom runtime is followed: exec /var/task/bootstrap (its shebang finds python3)
    report, emu = run_probe([str(task / "bootstrap")], task, clean_bin)
    # THEN both invocations succeed and everything was imported from the zip
    assert_isolated(report, task, task / "vendor")
    assert report["executable"].startswith(str(clean_bin.parent))
    assert "PYTHONPATH" not in report["env_keys"] and "VIRTUAL_ENV" not in report["env_keys"]
    # and the records went to stdout as JSON lines (the default sink)
    lines = [json.loads(line) for stream, line in emu.output if stream == "stdout" and line.startswith("{")]
    assert any("probe m line 0" in r.get("message", "") for r in lines)


def test_the_default_handlers_run_from_the_unpacked_zip(task: Path, clean_bin: Path):
    with Emulator(handler="handlers.orders.handler", task_root=task, command=[str(task / "bootstrap")],
                  base_env=clean_env(clean_bin), capture_output=True, platform_sink=lambda line: None,
                  timeout_s=10.0, init_timeout_s=30.0) as emu:
        result = emu.invoke({"order_id": "o1", "customer": "c",
                             "items": [{"sku": "a", "quantity": 2, "unit_price_cents": 150}]})
    assert result.ok, result.body
    assert result.json() == {"order_id": "o1", "total_cents": 300, "item_count": 1}


@pytest.mark.parametrize("placement", ["next-to-bootstrap", "elsewhere"])
def test_exec_wrapper_hands_the_managed_runtime_over_to_bootstrap(
    task: Path, clean_bin: Path, tmp_path: Path, placement: str
):
    # GIVEN the wrapper in the function zip (/var/task/flightrec-wrapper), or on its own elsewhere, so that it
    # must find $LAMBDA_TASK_ROOT/bootstrap
    wrapper = task / WRAPPER_NAME
    if placement == "elsewhere":
        wrapper = tmp_path / "wrapper-dir" / WRAPPER_NAME
        wrapper.parent.mkdir()
        wrapper.write_bytes((REPO / "deploy" / "exec-wrapper").read_bytes())
        wrapper.chmod(0o755)
    # WHEN Lambda starts it as a managed runtime would: the interpreter and the runtime's own arguments appended
    # (paths of Lambda's python3.x image, absent here: the wrapper must ignore them)
    command = [str(wrapper), "/var/lang/bin/python3.12", "/var/runtime/bootstrap.py"]
    report, _ = run_probe(command, task, clean_bin, AWS_LAMBDA_EXEC_WRAPPER=str(wrapper))
    # THEN our bootstrap serves the invocations, with everything from the zip
    assert_isolated(report, task, task / "vendor")


def test_bootstrap_reached_through_a_symlink_as_in_the_container_image(task: Path, clean_bin: Path, tmp_path: Path):
    # GIVEN the Dockerfile's layout: /var/runtime/bootstrap is a symlink to /var/task/bootstrap
    runtime_dir = tmp_path / "var-runtime"
    runtime_dir.mkdir()
    (runtime_dir / "bootstrap").symlink_to(task / "bootstrap")
    # WHEN the base image's entry point execs the symlink
    report, _ = run_probe([str(runtime_dir / "bootstrap")], task, clean_bin)
    # THEN bootstrap resolves its real folder and finds vendor/ there
    assert_isolated(report, task, task / "vendor")


def test_layer_and_code_zips_run_together(dist: Path, clean_bin: Path, tmp_path: Path):
    # GIVEN layer.zip unpacked as /opt would be and code.zip as /var/task
    opt = unzip_like_lambda(dist / "layer.zip", tmp_path / "opt")
    code = unzip_like_lambda(dist / "code.zip", tmp_path / "task")
    # WHEN /opt/bootstrap runs (Lambda's fallback when /var/task has none). bootstrap looks in the literal
    # /opt/python, which this machine must not be made to hold: PYTHONPATH points at the unpacked copy instead.
    assert not (code / "bootstrap").exists()
    report, _ = run_probe([str(opt / "bootstrap")], code, clean_bin, PYTHONPATH=str(opt / "python"))
    # THEN the runtime and every dependency come from the layer
    assert_isolated(report, opt / "python", opt / "python")


def test_a_target_the_wheelhouse_cannot_serve_fails_with_the_reason(tmp_path: Path):
    # GIVEN the wheelhouse holds this machine's wheels only; WHEN an arm64 zip for another Python is asked for
    other = next(v for v in ("3.13", "3.12") if v != this_machine().python)
    arch = "x86_64" if this_machine().arch == "arm64" else "arm64"
    cmd = [sys.executable, "-m", "runtime", "package", "--arch", arch, "--python", other,
           "--wheelhouse", str(WHEELHOUSE), "--out", str(tmp_path / "dist")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    # THEN nothing is written, and the message names the target and where pip looked
    assert proc.returncode == 1
    assert f"pip could not get wheels for {arch}, Python {other}" in proc.stderr
    assert str(WHEELHOUSE) in proc.stderr
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())


# --- the log sinks, from the unpacked zip -------------------------------------------------------------------
def test_unpacked_zip_delivers_logs_to_postgres_and_rsyslog(task: Path, clean_bin: Path, pg_db: str, rsyslog):
    marker = f"pkg-{uuid.uuid4().hex[:12]}"
    # GIVEN the unpacked zip configured for PostgreSQL (auto-migrated) and syslog over TCP
    env = {"LOGS_DATABASE_URL": pg_db, "LOGS_AUTO_MIGRATE": "1",
           "SYSLOG_URL": f"tcp://127.0.0.1:{rsyslog.tcp_port}", "MARKER": marker}
    # WHEN it serves two invocations (the emulator returns once the runtime is back at /next: flushes are done)
    report, _ = run_probe([str(task / "bootstrap")], task, clean_bin, **env)
    assert_isolated(report, task, task / "vendor")
    # THEN the probe's records are rows in PostgreSQL...
    with psycopg.connect(pg_db) as conn:
        rows = conn.execute("SELECT message, request_id FROM logs WHERE message LIKE %s ORDER BY message",
                            (f"probe {marker} line %",)).fetchall()
    assert [r[0] for r in rows] == [f"probe {marker} line {i}" for i in range(3)]
    assert len({r[1] for r in rows}) == 1 and rows[0][1]
    # ...and syslog messages in rsyslog
    messages = rsyslog.wait_for(3, where=lambda m: f"probe {marker} line" in (m.get("msg") or ""))
    assert len(messages) == 3
