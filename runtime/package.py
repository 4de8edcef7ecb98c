"""`flightrec package`: build the deployment zip (and, with `--layer`, a layer zip and a code-only zip).

Why it exists: the runtime only works on Lambda if the zip carries everything it imports, built for Lambda's
machine, not the developer's. So dependencies come from wheels only, resolved by pip for the target
(`--arch`, `--python`, manylinux), and are unpacked, not installed: a wheel is a zip with the final file layout,
and its `.dist-info` must stay (OpenTelemetry finds its context and propagators through entry points).

Layout of `dist/function.zip` (as `/var/task`):
    bootstrap               the entry point, mode 0755 (Lambda runs `/var/task/bootstrap` of a provided runtime)
    flightrec-wrapper       `deploy/exec-wrapper`, mode 0755, for `AWS_LAMBDA_EXEC_WRAPPER` on the managed runtime
    runtime/, telemetry/    the runtime; the development tools (`runtime/emulator/`, `runtime/cli.py`,
                            `runtime/package.py`, `runtime/__main__.py`) stay behind
    handlers/ (or --code)   the function's code, each path under its own name
    vendor/                 the dependencies; `bootstrap` puts this folder on `sys.path`
    __pycache__/ (each)     bytecode, precompiled when this Python is the target's version (see `add_bytecode`)
    flightrec-package.json  what was built for which target (read by the Dockerfile's version check)
`dist/layer.zip` (as `/opt`): `bootstrap`, `flightrec-wrapper`, and `python/` holding runtime, telemetry and the
dependencies (`/opt/python` is on `bootstrap`'s path); `dist/code.zip` holds only the function's code.

Allowed imports: stdlib only. Never `telemetry`: packaging must not depend on what it packages.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import marshal
import os
import platform
import re
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MIB = 1024 * 1024
#: Lambda's quotas, as its error messages state them in bytes (52428800 and 262144000).
ZIPPED_LIMIT = 50 * MIB  # a .zip uploaded directly (not through S3)
UNZIPPED_LIMIT = 250 * MIB  # function code plus all layers, unpacked

ARCHES = ("x86_64", "arm64")
PYTHONS = ("3.11", "3.12", "3.13")
#: Lambda says arm64, wheels say aarch64.
_WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
#: manylinux2014's glibc: its wheels run on every Lambda OS (Amazon Linux 2 has 2.26, Amazon Linux 2023 2.34).
DEFAULT_GLIBC = "2.17"
#: Extras that are development tools: a deployment never carries them (DECISIONS.md: pytest is never vendored).
DEV_EXTRAS = frozenset({"test", "dev"})
NEVER_VENDORED = frozenset({"pytest", "pluggy", "iniconfig", "hypothesis", "mypy", "ruff", "import-linter"})

#: Runtime files that are development tools. `check_shipped_imports` proves nothing shipped imports them.
DEV_ONLY = ("runtime/emulator/", "runtime/cli.py", "runtime/package.py", "runtime/__main__.py")
SHIPPED_PACKAGES = ("runtime", "telemetry")
MANIFEST_NAME = "flightrec-package.json"
WRAPPER_SOURCE = "deploy/exec-wrapper"
WRAPPER_NAME = "flightrec-wrapper"
#: Names at the zip's root that belong to the runtime; function code may not take them.
RESERVED_ROOT_NAMES = frozenset({"bootstrap", WRAPPER_NAME, "vendor", MANIFEST_NAME, *SHIPPED_PACKAGES})
DEFAULT_OUT = "dist"  # under the repository, like the Dockerfile expects: dist/function.zip
FUNCTION_ZIP, LAYER_ZIP, CODE_ZIP = "function.zip", "layer.zip", "code.zip"

#: Safe to drop from a deployment: bytecode caches (stale for the target, and Lambda's task root is read-only)
#: and type stubs (read by type checkers only). Test folders are kept: some packages import their own.
_STRIPPED_SUFFIXES = (".pyc", ".pyo", ".pyi")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same inputs give the same bytes (and CodeSha256)


class PackageError(Exception):
    """A build that cannot produce a correct artifact; the message says what to do."""


# --- the target ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Target:
    """The Lambda machine the dependencies are for: CPU architecture, Python version, newest glibc allowed."""

    arch: str
    python: str
    glibc: str = DEFAULT_GLIBC

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise PackageError(f"--arch must be one of {', '.join(ARCHES)}, got {self.arch!r}")
        if self.python not in PYTHONS:
            raise PackageError(f"--python must be one of {', '.join(PYTHONS)}, got {self.python!r}")
        if not re.fullmatch(r"2\.(1[7-9]|[2-9][0-9])", self.glibc):
            raise PackageError(f"--glibc must be 2.17 or newer, e.g. 2.26 or 2.34, got {self.glibc!r}")

    @property
    def platforms(self) -> list[str]:
        """pip `--platform` values: every PEP 600 tag from the target glibc down to 2.17, then manylinux2014.

        pip expands the legacy `manylinux2014` tag to 2010/1 but not to its PEP 600 spelling `manylinux_2_17`,
        and newer wheels are often tagged only `manylinux_2_28`: hence the explicit list.
        """
        arch = _WHEEL_ARCH[self.arch]
        newest = int(self.glibc.split(".")[1])
        return [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 16, -1)] + [f"manylinux2014_{arch}"]

    def describe(self) -> str:
        return f"{self.arch}, Python {self.python}, glibc {self.glibc}+"


def this_machine() -> Target:
    """The target that matches the running interpreter and CPU: what a local clean-room test can run."""
    machine = platform.machine().lower()
    arch = "arm64" if machine in {"aarch64", "arm64"} else machine
    return Target(arch, f"{sys.version_info.major}.{sys.version_info.minor}")


# --- the project ----------------------------------------------------------------------------------------------
def project_root() -> Path:
    """The source checkout this module lives in: `package` builds from files that a wheel install lacks."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "bootstrap").is_file() or not (root / "pyproject.toml").is_file():
        raise PackageError(f"{root} is not a lambda-flight-recorder checkout (no bootstrap or pyproject.toml); "
                           "run `flightrec package` from a clone of the repository")
    return root


def requirements(project: Path, extras: Sequence[str]) -> list[str]:
    """The runtime dependencies from pyproject.toml, plus the chosen extras; development extras are refused."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = meta.get("optional-dependencies", {})
    reqs: list[str] = list(meta.get("dependencies", []))
    for extra in extras:
        if extra in DEV_EXTRAS:
            raise PackageError(f"extra {extra!r} holds development tools; they are never vendored into a deployment")
        if extra not in optional:
            known = ", ".join(sorted(set(optional) - DEV_EXTRAS)) or "none"
            raise PackageError(f"unknown extra {extra!r} (deployable extras: {known})")
        reqs.extend(optional[extra])
    return reqs


# --- wheels ---------------------------------------------------------------------------------------------------
def pip_download(
    reqs: Sequence[str],
    target: Target,
    dest: Path,
    *,
    constraints: Path,
    wheelhouse: Path | None,
) -> list[Path]:
    """Resolve `reqs` for `target` with pip, wheels only, into `dest`; return the wheels.

    With a wheelhouse, pip runs `--isolated --no-index`: no configuration, no network, nothing but that folder
    (the tests reach nothing but 127.0.0.1). Without one, pip uses the user's index and configuration.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--quiet",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", target.python,
           "-c", str(constraints), "-d", str(dest)]
    for plat in target.platforms:
        cmd += ["--platform", plat]
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise PackageError(f"wheelhouse {wheelhouse} does not exist (fill it with `./dev wheelhouse` or "
                               "`flightrec package --download-to DIR`)")
        cmd[4:4] = ["--isolated"]
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    cmd += list(reqs)
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        where = f"the wheelhouse {wheelhouse}" if wheelhouse is not None else "the package index"
        detail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise PackageError(f"pip could not get wheels for {target.describe()} from {where} "
                           f"(a dependency without a wheel for this target cannot be vendored):\n{detail}")
    return sorted(dest.glob("*.whl"))


def _dist_name(wheel: Path) -> tuple[str, str]:
    """(normalised project name, version) from a wheel's file name."""
    name, version = wheel.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def project_dist_info(root: Path) -> dict[str, bytes]:
    """A minimal `.dist-info` for the runtime itself (METADATA and entry_points.txt from pyproject.toml): the zip
    ships `runtime/` and `telemetry/` as plain folders, and without it `importlib.metadata` would not find the
    entry points the project declares, e.g. the `xray` propagator OpenTelemetry looks up for OTEL_PROPAGATORS."""
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    folder = f"{re.sub(r'[-.]+', '_', name)}-{version}.dist-info"
    groups = project.get("entry-points", {})
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{key} = {target}\n" for key, target in sorted(table.items())) + "\n"
        for group, table in sorted(groups.items())
    )
    return {
        f"{folder}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{folder}/entry_points.txt": entry_points.encode(),
    }


# --- archive entries ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Entry:
    """One file of an archive: where its bytes come from, and its Unix mode."""

    source: Path | tuple[zipfile.ZipFile, str] | bytes  # a file, a member of an open wheel, or generated content
    size: int
    mode: int = 0o644

    def read(self) -> bytes:
        if isinstance(self.source, bytes):
            return self.source
        if isinstance(self.source, Path):
            return self.source.read_bytes()
        wheel, member = self.source
        return wheel.read(member)


@dataclass(slots=True)
class Tree:
    """Archive paths → entries; a path may be added twice only with the same content (namespace packages)."""

    entries: dict[str, Entry] = field(default_factory=dict)
    stripped_bytes: int = 0

    def add(self, arcname: str, entry: Entry) -> None:
        old = self.entries.get(arcname)
        if old is not None and (old.size != entry.size or old.read() != entry.read()):
            raise PackageError(f"two sources provide {arcname} with different content")
        self.entries[arcname] = entry

    def merge(self, other: Tree, prefix: str = "") -> None:
        for name, entry in other.entries.items():
            self.add(prefix + name, entry)
        self.stripped_bytes += other.stripped_bytes

    @property
    def unzipped_size(self) -> int:
        return sum(e.size for e in self.entries.values())


def _stripped(path: PurePosixPath) -> bool:
    return "__pycache__" in path.parts or path.suffix in _STRIPPED_SUFFIXES


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _file_mode(path: Path) -> int:
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644


def tree_from_paths(paths: Iterable[Path], exclude: Sequence[str] = ()) -> Tree:
    """Each path (a folder or a file) under its own name at the tree's root, minus excluded and stripped files."""
    tree = Tree()
    for path in paths:
        files = [path] if path.is_file() else list(_walk(path))
        for file in files:
            arcname = PurePosixPath(path.name, file.relative_to(path).as_posix())  # a file: "." drops out
            text = arcname.as_posix()
            if any(text == ex or (ex.endswith("/") and text.startswith(ex)) for ex in exclude):
                continue
            size = file.stat().st_size
            if _stripped(arcname):
                tree.stripped_bytes += size
                continue
            tree.add(text, Entry(file, size, _file_mode(file)))
    return tree


def tree_from_wheels(wheels: Iterable[Path], stack: contextlib.ExitStack) -> Tree:
    """Unpack wheels the way an installer lays them out: `.data/purelib|platlib` moved to the root, scripts,
    headers and data dropped (nothing imports them), bytecode and stubs stripped.

    The wheels stay open (closed by `stack`) until the zips are written: reopening one per member is slow.
    """
    tree = Tree()
    for wheel in wheels:
        zf = stack.enter_context(zipfile.ZipFile(wheel))
        for info in zf.infolist():
            if info.is_dir():
                continue
            path = PurePosixPath(info.filename)
            if path.parts[0].endswith(".data"):
                if len(path.parts) < 3 or path.parts[1] not in {"purelib", "platlib"}:
                    tree.stripped_bytes += info.file_size
                    continue
                path = PurePosixPath(*path.parts[2:])
            if _stripped(path):
                tree.stripped_bytes += info.file_size
                continue
            mode = 0o755 if (info.external_attr >> 16) & stat.S_IXUSR else 0o644
            tree.add(path.as_posix(), Entry((zf, info.filename), info.file_size, mode))
    return tree


# --- the guard: nothing shipped imports a development tool ------------------------------------------------------
def _module_of(arcname: str) -> str | None:
    path = PurePosixPath(arcname)
    if path.suffix != ".py" or path.parts[0] not in SHIPPED_PACKAGES:
        return None
    parts = list(path.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: bytes, filename: str) -> set[str]:
    """Every absolute module name a file may import, including lazy imports inside functions.

    `from a import b` yields both `a` and `a.b`, since `b` may be a submodule.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def check_shipped_imports(tree: Tree, excluded: Sequence[str] = DEV_ONLY) -> None:
    """Fail the build if `bootstrap`, `runtime` or `telemetry` as shipped import a module left out of the zip."""
    dev_modules = {ex.rstrip("/").removesuffix(".py").replace("/", ".") for ex in excluded}
    problems = []
    for arcname, entry in sorted(tree.entries.items()):
        if arcname != "bootstrap" and _module_of(arcname) is None:
            continue
        for module in imported_modules(entry.read(), arcname):
            if module.split(".")[0] not in SHIPPED_PACKAGES:
                continue
            if any(module == d or module.startswith(d + ".") for d in dev_modules):
                problems.append(f"{arcname} imports {module}, which is a development tool left out of the zip")
    if problems:
        raise PackageError("the deployment would be broken:\n  " + "\n  ".join(problems))


# --- bytecode -------------------------------------------------------------------------------------------------
def bytecode_tag(target: Target) -> str | None:
    """The cache tag to precompile for, or None: only this interpreter's own bytecode can be produced here."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if sys.implementation.name != "cpython" or here != target.python:
        return None
    return sys.implementation.cache_tag


def add_bytecode(tree: Tree) -> int:
    """Add `__pycache__/<name>.<tag>.pyc` for every module of `tree`; return how many compiled.

    Why: Lambda's /var/task and /opt are read-only, so Python cannot cache bytecode there and every cold start
    would compile each module it imports again (measured: ~0.7 s more to import the runtime with its
    dependencies on a small machine). The files are PEP 552 unchecked-hash .pyc: valid whatever the files'
    timestamps after unpacking, which is safe for an artifact nobody edits in place. A module that does not
    compile is left to be compiled (and to fail) at import, as pip leaves it.
    """
    added = 0
    for name, entry in list(tree.entries.items()):
        path = PurePosixPath(name)
        if path.suffix != ".py":
            continue
        source = entry.read()
        try:
            code = compile(source, name, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        header = importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little") + importlib.util.source_hash(source)
        data = header + marshal.dumps(code)
        cache = path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.pyc"
        tree.add(cache.as_posix(), Entry(data, len(data)))
        added += 1
    return added


# --- writing --------------------------------------------------------------------------------------------------
def write_zip(tree: Tree, path: Path) -> None:
    """Deterministic zip: sorted entries, fixed timestamps, Unix modes set explicitly (`external_attr`), and a
    directory entry (0755) for every folder, so Lambda's unpacker never has to guess permissions."""
    dirs: set[str] = set()
    for name in tree.entries:
        parents = PurePosixPath(name).parents
        dirs.update(p.as_posix() + "/" for p in parents if p.as_posix() != ".")
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(dirs | set(tree.entries)):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.create_system = 3  # Unix: unzip tools honour the mode bits only for Unix-made entries
            if name in dirs:
                info.external_attr = ((stat.S_IFDIR | 0o755) << 16) | 0x10  # 0x10: MS-DOS directory flag
                zf.writestr(info, b"")
                continue
            entry = tree.entries[name]
            info.external_attr = (stat.S_IFREG | entry.mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entry.read())
    tmp.replace(path)


@dataclass(frozen=True, slots=True)
class Artifact:
    """A written zip and its sizes, for the report and the limit check."""

    path: Path
    zipped: int
    unzipped: int


def _mb(n: int) -> str:
    """Sizes as Lambda's quotas state them (MB meaning MiB); small files in KB so they do not read as 0.0 MB."""
    return f"{n / MIB:.1f} MB" if n >= MIB else f"{n / 1024:.1f} KB"


def check_limits(artifacts: Sequence[Artifact], *, via_s3: bool) -> list[str]:
    """Problems with Lambda's size quotas: each zip ≤ 50 MB (direct upload), everything unpacked ≤ 250 MB."""
    problems = []
    if not via_s3:
        problems += [
            f"{a.path.name} is {_mb(a.zipped)} zipped, above Lambda's {_mb(ZIPPED_LIMIT)} limit for a direct "
            "upload; upload it through S3 (SAM does) and build with --via-s3, or drop dependencies/extras"
            for a in artifacts if a.zipped > ZIPPED_LIMIT
        ]
    total = sum(a.unzipped for a in artifacts)
    if total > UNZIPPED_LIMIT:
        problems.append(f"{' + '.join(a.path.name for a in artifacts)} unpack to {_mb(total)}, above Lambda's "
                        f"{_mb(UNZIPPED_LIMIT)} limit for function code plus layers; use a container image "
                        "(10 GB) or drop dependencies/extras")
    return problems


# --- the build ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BuildOptions:
    target: Target
    out_dir: Path
    code: tuple[Path, ...]
    extras: tuple[str, ...] = ()
    wheelhouse: Path | None = None
    layer: bool = False
    via_s3: bool = False
    compile: bool = True  # precompile bytecode when this interpreter is the target's version


@dataclass(frozen=True, slots=True)
class BuildResult:
    artifacts: tuple[Artifact, ...]
    distributions: dict[str, str]
    stripped_bytes: int
    bytecode: str | None  # the cache tag of the precompiled .pyc files (e.g. cpython-311), None when not compiled
    compiled: int


def _manifest(options: BuildOptions, dists: dict[str, str], bytecode: str | None) -> Entry:
    data = json.dumps(
        {
            "target": {"arch": options.target.arch, "python": options.target.python,
                       "glibc": options.target.glibc, "platforms": options.target.platforms},
            "extras": list(options.extras),
            "distributions": dists,
            "bytecode": bytecode,
        },
        indent=2,
        sort_keys=True,
    ).encode() + b"\n"
    return Entry(data, len(data))


def code_tree(paths: Sequence[Path]) -> Tree:
    """The function's code; a path named like a part of the runtime would be silently shadowed, so it fails."""
    for path in paths:
        if not path.exists():
            raise PackageError(f"--code {path}: no such file or folder")
        if path.name in RESERVED_ROOT_NAMES:
            raise PackageError(f"--code {path}: {path.name!r} is a name the runtime uses at the zip's root; rename it")
    return tree_from_paths(paths)


def build(options: BuildOptions, project: Path | None = None) -> BuildResult:
    """Resolve, unpack, check and write the artifacts; raise `PackageError` with a clear message on any problem."""
    root = project or project_root()
    reqs = requirements(root, options.extras)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="flightrec-wheels-"))
        wheels = pip_download(reqs, options.target, Path(tmp), constraints=root / "constraints.txt",
                              wheelhouse=options.wheelhouse)
        dists = dict(sorted(_dist_name(w) for w in wheels))
        forbidden = sorted(set(dists) & NEVER_VENDORED)
        if forbidden:
            raise PackageError(f"the resolved dependencies include development tools: {', '.join(forbidden)}")
        deps = tree_from_wheels(wheels, stack)

        runtime = tree_from_paths([root / "bootstrap", root / "runtime", root / "telemetry"], exclude=DEV_ONLY)
        runtime.entries["bootstrap"] = Entry(root / "bootstrap", (root / "bootstrap").stat().st_size, 0o755)
        wrapper = root / WRAPPER_SOURCE
        runtime.add(WRAPPER_NAME, Entry(wrapper, wrapper.stat().st_size, 0o755))
        check_shipped_imports(runtime)
        for name, content in project_dist_info(root).items():  # our own entry points (the `xray` propagator)
            runtime.add(name, Entry(content, len(content)))
        code = code_tree(options.code)
        bytecode = bytecode_tag(options.target) if options.compile else None
        compiled = sum(add_bytecode(tree) for tree in (runtime, code, deps)) if bytecode else 0
        manifest = _manifest(options, dists, bytecode)

        plans: list[tuple[str, Tree]] = []
        function = Tree()
        function.merge(runtime)
        function.merge(code)
        function.merge(deps, "vendor/")
        function.add(MANIFEST_NAME, manifest)
        plans.append((FUNCTION_ZIP, function))
        if options.layer:
            layer = Tree()
            for name in ("bootstrap", WRAPPER_NAME):
                layer.add(name, runtime.entries[name])
            packages = {n: e for n, e in runtime.entries.items() if n not in {"bootstrap", WRAPPER_NAME}}
            layer.merge(Tree(entries=packages), "python/")
            layer.merge(deps, "python/")
            layer.add(MANIFEST_NAME, manifest)
            plans += [(LAYER_ZIP, layer), (CODE_ZIP, code)]

        options.out_dir.mkdir(parents=True, exist_ok=True)
        artifacts = []
        for name, tree in plans:
            path = options.out_dir / name
            write_zip(tree, path)
            artifacts.append(Artifact(path, path.stat().st_size, tree.unzipped_size))
        groups = [artifacts[:1]] + ([artifacts[1:]] if options.layer else [])
        problems = [p for group in groups for p in check_limits(group, via_s3=options.via_s3)]
        if problems:
            for artifact in artifacts:
                artifact.path.unlink(missing_ok=True)
            raise PackageError("the artifact is too large for Lambda (nothing was left in "
                               f"{options.out_dir}):\n  " + "\n  ".join(problems))
        return BuildResult(tuple(artifacts), dists, function.stripped_bytes, bytecode, compiled)


def report(result: BuildResult, options: BuildOptions) -> str:
    """What a user checks before deploying: the target, what was vendored, and each size against its limit."""
    lines = [f"target: {options.target.describe()}"
             + (f", extras: {', '.join(options.extras)}" if options.extras else ""),
             f"vendored {len(result.distributions)} distributions: "
             + ", ".join(f"{n}=={v}" for n, v in result.distributions.items()),
             f"stripped {_mb(result.stripped_bytes)} of bytecode caches, type stubs and wheel scripts"]
    if result.bytecode:
        lines.append(f"precompiled {result.compiled} modules for {result.bytecode} (the task root is read-only on "
                     "Lambda: Python could not cache them itself)")
    elif options.compile:
        lines.append(f"not precompiled: bytecode for Python {options.target.python} needs that Python to build "
                     "the zip (cold starts will compile what they import)")
    for a in result.artifacts:
        lines.append(f"{a.path}: {_mb(a.zipped)} zipped (limit {_mb(ZIPPED_LIMIT)} for a direct upload), "
                     f"{_mb(a.unzipped)} unzipped (limit {_mb(UNZIPPED_LIMIT)}, with all layers)")
    if options.layer:
        layer, code = result.artifacts[1], result.artifacts[2]
        lines.append(f"layer + code unzipped: {_mb(layer.unzipped + code.unzipped)} (limit {_mb(UNZIPPED_LIMIT)})")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """`flightrec package`: registered in `runtime.cli.SUBCOMMANDS`."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    parser.add_argument("--arch", choices=ARCHES, default="x86_64",
                        help="Lambda architecture of the function (default: x86_64, Lambda's default)")
    parser.add_argument("--python", choices=PYTHONS, default=here if here in PYTHONS else "3.12",
                        help="Python version on the target (default: this interpreter's, %(default)s)")
    parser.add_argument("--glibc", default=DEFAULT_GLIBC,
                        help="newest glibc the target has, for wheels built against it: 2.17 fits every Lambda "
                             "OS (default); Amazon Linux 2023 runtimes have 2.34, Amazon Linux 2 has 2.26")
    parser.add_argument("--extras", action="append", default=[], metavar="NAME",
                        help="optional dependencies to vendor too, e.g. otlp (repeat or comma-separate)")
    parser.add_argument("--code", action="append", type=Path, default=None, metavar="PATH",
                        help="function code: a package folder or a module file, put at the zip's root under "
                             "its own name (repeatable; default: the repository's handlers/)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the repository's dist/)")
    parser.add_argument("--wheelhouse", type=Path, default=None,
                        help="take wheels only from this folder, offline (see --download-to)")
    parser.add_argument("--download-to", type=Path, default=None, metavar="DIR",
                        help="only download the target's wheels into DIR (a wheelhouse) and exit")
    parser.add_argument("--layer", action="store_true",
                        help="also write dist/layer.zip (runtime + dependencies for /opt) and dist/code.zip")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="ship no precompiled bytecode (smaller; slower cold starts)")
    parser.add_argument("--via-s3", action="store_true",
                        help="the zip goes through S3 (as with SAM): a zip above 50 MB is then allowed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 with a report on stdout; exit 1 with the reason on stderr."""
    try:
        target = Target(args.arch, args.python, args.glibc)
        extras = tuple(e.strip() for item in args.extras for e in item.split(",") if e.strip())
        root = project_root()
        if args.download_to is not None:
            reqs = requirements(root, extras)
            wheels = pip_download(reqs, target, args.download_to, constraints=root / "constraints.txt",
                                  wheelhouse=args.wheelhouse)
            print(f"{len(wheels)} wheels for {target.describe()} in {args.download_to}")
            return 0
        options = BuildOptions(
            target=target,
            out_dir=args.out if args.out is not None else root / DEFAULT_OUT,
            code=tuple(args.code) if args.code else (root / "handlers",),
            extras=extras,
            wheelhouse=args.wheelhouse,
            layer=args.layer,
            via_s3=args.via_s3,
            compile=args.compile,
        )
        result = build(options, root)
    except PackageError as exc:
        print(f"flightrec package: {exc}", file=sys.stderr)
        return 1
    print(report(result, options))
    return 0
