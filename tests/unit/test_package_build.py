"""`runtime.package` pieces that need no wheels: targets, requirements, size limits, the import guard, zip bytes.

The whole build, from a wheelhouse, unpacked and run, is in tests/integration/test_package.py.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runtime import package
from runtime.package import MIB, Artifact, Entry, PackageError, Target, Tree

REPO = Path(__file__).resolve().parents[2]


def test_target_platforms_cover_pep600_and_legacy_tags_down_to_2_17():
    assert Target("arm64", "3.12").platforms == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert Target("x86_64", "3.13", "2.28").platforms[:2] == ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64"]
    assert Target("x86_64", "3.13", "2.28").platforms[-2:] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]


@pytest.mark.parametrize(("arch", "python", "glibc", "word"), [
    ("aarch64", "3.12", "2.17", "--arch"),  # Lambda says arm64
    ("x86_64", "3.10", "2.17", "--python"),
    ("x86_64", "3.12", "2.5", "--glibc"),
])
def test_a_target_lambda_does_not_have_is_refused(arch: str, python: str, glibc: str, word: str):
    with pytest.raises(PackageError, match=word):
        Target(arch, python, glibc)


def test_requirements_are_the_runtime_dependencies_plus_deployable_extras_only():
    base = package.requirements(REPO, ())
    assert "msgspec" in base and "psycopg[binary]" in base and "opentelemetry-sdk" in base
    assert not any("pytest" in r for r in base)
    assert "opentelemetry-exporter-otlp-proto-http" in package.requirements(REPO, ("otlp",))
    with pytest.raises(PackageError, match="never vendored"):
        package.requirements(REPO, ("test",))
    with pytest.raises(PackageError, match=r"unknown extra 'nope'.*otlp"):
        package.requirements(REPO, ("nope",))


def test_size_limits_are_lambdas_in_bytes():
    ok = Artifact(Path("function.zip"), 50 * MIB, 250 * MIB)
    assert package.check_limits([ok], via_s3=False) == []
    too_big_zip = Artifact(Path("function.zip"), 50 * MIB + 1, 60 * MIB)
    [problem] = package.check_limits([too_big_zip], via_s3=False)
    assert "50.0 MB" in problem and "S3" in problem
    assert package.check_limits([too_big_zip], via_s3=True) == []  # S3 lifts only the zipped limit
    layer, code = Artifact(Path("layer.zip"), MIB, 200 * MIB), Artifact(Path("code.zip"), MIB, 50 * MIB + 1)
    [problem] = package.check_limits([layer, code], via_s3=True)
    assert "layer.zip + code.zip" in problem and "250.0 MB" in problem


def _tree(files: dict[str, str]) -> Tree:
    tree = Tree()
    for name, text in files.items():
        tree.add(name, Entry(text.encode(), len(text.encode())))
    return tree


def test_the_import_guard_finds_a_shipped_module_that_needs_a_development_tool():
    # GIVEN a telemetry module that imports the CLI lazily, inside a function
    tree = _tree({"telemetry/x.py": "def f():\n    from runtime import cli\n", "bootstrap": "import runtime.loop\n"})
    # THEN the build refuses, naming the file and the module
    with pytest.raises(PackageError, match=r"telemetry/x.py imports runtime.cli"):
        package.check_shipped_imports(tree)
    with pytest.raises(PackageError, match=r"bootstrap imports runtime.emulator.api"):
        package.check_shipped_imports(_tree({"bootstrap": "from runtime.emulator.api import Emulator\n"}))


def test_the_real_runtime_passes_the_import_guard():
    tree = package.tree_from_paths([REPO / "bootstrap", REPO / "runtime", REPO / "telemetry"], exclude=package.DEV_ONLY)
    assert "runtime/loop.py" in tree.entries and "runtime/cli.py" not in tree.entries
    assert not any(n.startswith("runtime/emulator/") for n in tree.entries)
    package.check_shipped_imports(tree)


@pytest.mark.parametrize("name", ["runtime", "telemetry", "vendor", "bootstrap"])
def test_function_code_may_not_take_a_name_of_the_runtime(tmp_path: Path, name: str):
    path = tmp_path / name
    path.mkdir()
    with pytest.raises(PackageError, match="rename it"):
        package.code_tree([path])


def test_zips_are_deterministic_with_explicit_unix_modes(tmp_path: Path):
    tree = _tree({"b/mod.py": "x = 1\n", "a.txt": "a\n"})
    tree.add("bootstrap", Entry(b"#!/usr/bin/env python3\n", 23, 0o755))
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    package.write_zip(tree, first)
    package.write_zip(tree, second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    assert list(infos) == sorted(infos)
    assert infos["bootstrap"].external_attr >> 16 == stat.S_IFREG | 0o755
    assert infos["a.txt"].external_attr >> 16 == stat.S_IFREG | 0o644
    assert infos["b/"].external_attr >> 16 == stat.S_IFDIR | 0o755
    assert all(i.create_system == 3 and i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos.values())


def test_two_sources_of_one_path_must_agree():
    tree = _tree({"pkg/__init__.py": "a"})
    tree.add("pkg/__init__.py", Entry(b"a", 1))  # the same bytes (namespace packages share folders): fine
    with pytest.raises(PackageError, match="different content"):
        tree.add("pkg/__init__.py", Entry(b"b", 1))


def test_precompiled_bytecode_is_used_as_shipped(tmp_path: Path):
    # GIVEN a module compiled by add_bytecode and written out as a zip would unpack it
    tree = _tree({"pkgx/__init__.py": "", "pkgx/mod.py": "ANSWER = 41 + 1\n"})
    assert package.add_bytecode(tree) == 2
    for name, entry in tree.entries.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(entry.read())
    # WHEN Python imports it without being allowed to write bytecode (Lambda's task root is read-only)
    result = subprocess.run([sys.executable, "-v", "-c", "import pkgx.mod; print(pkgx.mod.ANSWER)"], cwd=tmp_path,
                            env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=True)
    # THEN it loads the shipped .pyc instead of compiling the source
    assert result.stdout.strip() == "42"
    assert f"code object from '{tmp_path}/pkgx/__pycache__/mod.{sys.implementation.cache_tag}.pyc'" in result.stderr


def test_bytecode_only_for_this_interpreters_version():
    here = package.this_machine()
    assert package.bytecode_tag(here) == sys.implementation.cache_tag
    other = next(v for v in package.PYTHONS if v != here.python)
    assert package.bytecode_tag(Target(here.arch, other)) is None
