"""`deploy/Dockerfile`, checked as far as is honest without a Docker engine (none on this machine or in CI).

What is checked: the instructions parse; the base image is AWS's OS-only Amazon Linux 2023 image with a tag that
is not `latest`; the Python it installs is one `flightrec package` can target; every build-context file it uses is
one the repository or `flightrec package` produces; every path it uses inside the zip is one the zip has; the entry
point is the base image's, which runs /var/runtime/bootstrap, and that path is linked to our bootstrap; the handler
in CMD exists; each RUN line is valid shell (`sh -n`); the embedded target check is valid Python that accepts a
matching zip and rejects another.

What is NOT checked (needs a build): that the image builds, that `dnf` finds the package, that the image starts.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import package

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def parse(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line, as Docker reads them: `\\` + newline joins lines, comment lines
    (also inside a continued instruction) are dropped."""
    result: list[tuple[str, str]] = []
    buffer = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1]
            continue
        buffer += line
        keyword, _, args = buffer.strip().partition(" ")
        result.append((keyword.upper(), args.strip()))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"
    return result


@pytest.fixture(scope="module")
def text() -> str:
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def instructions(text: str) -> list[tuple[str, str]]:
    return parse(text)


def args_of(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def run_commands(instructions: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """Each RUN as (its --flags, its shell command)."""
    out = []
    for args in args_of(instructions, "RUN"):
        flags, rest = [], args
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.lstrip()
        out.append((flags, rest))
    return out


def test_only_known_instructions_and_buildkit_syntax(text: str, instructions: list[tuple[str, str]]):
    assert {kw for kw, _ in instructions} <= {"FROM", "ARG", "RUN", "ENV", "ENTRYPOINT", "CMD", "COPY", "WORKDIR"}
    # RUN --mount needs the BuildKit front end, which the parser directive on the first line selects
    assert text.splitlines()[0].startswith("# syntax=docker/dockerfile:1")


def test_base_image_is_the_os_only_al2023_image_without_latest(text: str, instructions: list[tuple[str, str]]):
    froms = args_of(instructions, "FROM")
    assert froms == ["public.ecr.aws/lambda/provided:al2023"]
    image = froms[0].split()[0]
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest"
    # the tag moves (AWS republishes it with fixes): the file must say so, and how to pin a digest
    before_from = text[: text.index("\nFROM ")]
    assert "moving tag" in before_from and "sha256" in before_from


def test_installs_a_python_that_package_can_target(instructions: list[tuple[str, str]]):
    defaults = dict(a.split("=", 1) for a in args_of(instructions, "ARG") if "=" in a)
    assert defaults["PYTHON_VERSION"] in package.PYTHONS
    install = next(cmd for _, cmd in run_commands(instructions) if "dnf install" in cmd)
    assert '"python${PYTHON_VERSION}"' in install
    # the shebang of bootstrap is `#!/usr/bin/env python3`: the installed version must be the first python3 on
    # PATH, without touching Amazon Linux's own /usr/bin/python3
    assert "ln -s \"/usr/bin/python${PYTHON_VERSION}\" /usr/local/bin/python3" in install
    assert (REPO / "bootstrap").read_text().startswith("#!/usr/bin/env python3\n")


def test_build_context_files_are_ones_the_repository_or_package_produce(instructions: list[tuple[str, str]]):
    sources = []
    for flags, _ in run_commands(instructions):
        for flag in flags:
            if flag.startswith("--mount="):
                options = dict(part.split("=", 1) for part in flag.removeprefix("--mount=").split(","))
                sources.append(options["source"])
    for args in args_of(instructions, "COPY"):
        sources += [a for a in shlex.split(args) if not a.startswith("--")][:-1]
    # exactly what `flightrec package` writes by default, relative to the repository root (the build context)
    assert sources == [f"{package.DEFAULT_OUT}/{package.FUNCTION_ZIP}"]
    assert (REPO / ".gitignore").read_text().count(f"{package.DEFAULT_OUT}/") == 1  # an output, never committed


def test_paths_inside_the_zip_exist_in_the_zip_layout(instructions: list[tuple[str, str]]):
    commands = " ".join(cmd for _, cmd in run_commands(instructions))
    used = set(re.findall(r"\$\{LAMBDA_TASK_ROOT\}/([\w.-]+)", commands))
    assert used == {"bootstrap", package.WRAPPER_NAME, package.MANIFEST_NAME}
    assert (REPO / "bootstrap").is_file() and (REPO / package.WRAPPER_SOURCE).is_file()
    # the base image defines these two (public.ecr.aws/lambda/provided:al2023 sets ENV for both); we must not
    assert not any(a.startswith(("LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR")) for a in args_of(instructions, "ENV"))


def test_entry_point_runs_our_bootstrap_with_a_handler_that_exists(instructions: list[tuple[str, str]]):
    # the base image's entry point: it sets _HANDLER from CMD and executes /var/runtime/bootstrap
    assert json.loads(args_of(instructions, "ENTRYPOINT")[-1]) == ["/lambda-entrypoint.sh"]
    link = next(cmd for _, cmd in run_commands(instructions) if "LAMBDA_RUNTIME_DIR" in cmd)
    assert 'ln -sf "${LAMBDA_TASK_ROOT}/bootstrap" "${LAMBDA_RUNTIME_DIR}/bootstrap"' in link
    cmd = json.loads(args_of(instructions, "CMD")[-1])
    assert len(cmd) == 1  # the entry point takes exactly one argument, the handler
    module, _, function = cmd[0].rpartition(".")
    source = (REPO / (module.replace(".", "/") + ".py")).read_text()
    assert function in {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}


def test_every_run_line_is_valid_shell(instructions: list[tuple[str, str]]):
    for _, command in run_commands(instructions):
        check = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True, check=False)
        assert check.returncode == 0, f"{command}\n{check.stderr}"


@pytest.mark.parametrize(("zip_python", "accepted"), [("same", True), ("other", False)])
def test_target_check_accepts_a_matching_zip_and_rejects_another(
    instructions: list[tuple[str, str]], tmp_path: Path, zip_python: str, accepted: bool
):
    # GIVEN the check exactly as the RUN line has it, run by this Python in place of the image's
    command = next(cmd for _, cmd in run_commands(instructions) if "python3 -c" in cmd)
    script, manifest_arg = shlex.split(command[command.index("python3 -c"):])[2:4]
    assert manifest_arg == f"${{LAMBDA_TASK_ROOT}}/{package.MANIFEST_NAME}"
    here = package.this_machine()
    python = here.python if zip_python == "same" else next(v for v in package.PYTHONS if v != here.python)
    manifest = tmp_path / package.MANIFEST_NAME
    manifest.write_text(json.dumps({"target": {"python": python, "arch": here.arch}}))
    # WHEN it runs against a zip for this machine, or for another Python
    result = subprocess.run([sys.executable, "-c", script, str(manifest)], capture_output=True, text=True, check=False)
    # THEN the build goes on, or stops saying why
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert f"function.zip is for Python {python}" in result.stderr
