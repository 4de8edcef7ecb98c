"""Specification of `runtime.loader`: `_HANDLER` resolved with AWS's Python rules and exact error messages."""

from __future__ import annotations

import importlib
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
from awslambdaric.bootstrap import _get_handler
from awslambdaric.lambda_runtime_exception import FaultException

import runtime
from runtime.errors import (
    BuiltInModuleConflict,
    HandlerNotFound,
    ImportModuleError,
    MalformedHandlerName,
    ModuleShadowed,
    RuntimeFault,
    UserCodeSyntaxError,
    report_from,
)
from runtime.loader import check_no_shadowing, load_handler

REPO_ROOT = Path(runtime.__file__).resolve().parent.parent


def _forget_modules_under(root: Path) -> None:
    prefix = str(root)
    for name, module in list(sys.modules.items()):
        locations = [getattr(module, "__file__", None) or ""]
        try:
            locations += list(getattr(module, "__path__", None) or [])
        except Exception:  # odd path objects: not ours either way
            continue
        if any(str(location).startswith(prefix) for location in locations):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def task_root(tmp_path, monkeypatch):
    """A function's code folder on sys.path; every module imported from it is forgotten afterwards."""
    root = tmp_path / "task"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    _forget_modules_under(tmp_path)


def write(root: Path, relpath: str, source: str) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    return path


HANDLER_SRC = """
def handler(event, context):
    return {"from": __name__}
"""


@pytest.fixture
def function_code(task_root):
    """A task root holding the modules the specs below name."""
    write(task_root, "lt_app.py", HANDLER_SRC + "NOT_CALLABLE = 42\n")
    write(task_root, "lt_dir/lt_app.py", HANDLER_SRC)
    write(task_root, "lt_pkg/__init__.py", "")
    write(task_root, "lt_pkg/sub/__init__.py", "")
    write(task_root, "lt_pkg/sub/mod.py", "def fn(event, context):\n    return 'nested'\n")
    write(task_root, "lt-hyphen.py", HANDLER_SRC)
    write(task_root, "lt_broken.py", "def handler(event, context)\n    return 1\n")
    write(task_root, "lt_uses_dep.py", "import lt_nonexistent_dependency\n\ndef handler(e, c):\n    pass\n")
    write(task_root, "lt_raises.py", "raise ValueError('DATABASE_URL is not set')\n")
    return task_root


# --- exact messages ----------------------------------------------------------------------------------------------


def test_no_dot_is_a_malformed_handler_name():
    # GIVEN a handler spec without a dot
    # WHEN / THEN AWS's exact message, which quotes Python's own unpacking error
    with pytest.raises(MalformedHandlerName) as err:
        load_handler("nodot")
    assert err.value.message == "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"
    assert report_from(err.value).error_type == "Runtime.MalformedHandlerName"


@pytest.mark.parametrize("spec", [".handler", "app.", "."])
def test_empty_module_or_function_is_a_malformed_handler_name(spec):
    with pytest.raises(MalformedHandlerName, match=rf"^Bad handler '{re.escape(spec)}': module and function names"):
        load_handler(spec)


@pytest.mark.parametrize(("spec", "module"), [("sys.handler", "sys"), ("builtins.print", "builtins")])
def test_builtin_module_conflict(spec, module):
    # GIVEN a handler in a module compiled into the interpreter
    # WHEN / THEN BuiltInModuleConflict with AWS's message
    with pytest.raises(BuiltInModuleConflict) as err:
        load_handler(spec)
    assert err.value.message == f"Cannot use built-in module {module} as a handler module"
    assert err.value.error_type == "Runtime.BuiltInModuleConflict"


def test_missing_module_is_an_import_module_error(task_root):
    with pytest.raises(ImportModuleError) as err:
        load_handler("lt_missing.handler")
    assert err.value.message == "Unable to import module 'lt_missing': No module named 'lt_missing'"
    assert err.value.error_type == "Runtime.ImportModuleError"


def test_import_error_inside_the_user_module_is_an_import_module_error(function_code):
    # GIVEN a module that exists but imports a dependency that is not deployed
    # WHEN / THEN the message names the user's module and the missing dependency
    with pytest.raises(ImportModuleError) as err:
        load_handler("lt_uses_dep.handler")
    assert err.value.message == "Unable to import module 'lt_uses_dep': No module named 'lt_nonexistent_dependency'"


def test_syntax_error_is_a_user_code_syntax_error_with_awslambdaric_trace(function_code):
    # GIVEN a module with a syntax error on line 1
    path = function_code / "lt_broken.py"

    # WHEN it is loaded
    with pytest.raises(UserCodeSyntaxError) as err:
        load_handler("lt_broken.handler")

    # THEN AWS's message and its one-line trace ('Line', capitalised, as awslambdaric writes it)
    assert err.value.message == f"Syntax error in module 'lt_broken': expected ':' ({path.name}, line 1)"
    assert err.value.stack_trace == [f'  File "{path}" Line 1\n    def handler(event, context)\n']
    report = report_from(err.value, "")
    assert report.error_type == report.header_type == "Runtime.UserCodeSyntaxError"
    assert report.stack_trace == err.value.stack_trace


def test_missing_function_is_handler_not_found(function_code):
    with pytest.raises(HandlerNotFound) as err:
        load_handler("lt_app.nothere")
    assert err.value.message == "Handler 'nothere' missing on module 'lt_app'"
    assert err.value.error_type == "Runtime.HandlerNotFound"


def test_non_callable_attribute_is_handler_not_found(function_code):
    # GIVEN a module attribute that is not a function
    # WHEN / THEN it fails at init, not at the first invocation
    with pytest.raises(HandlerNotFound, match=r"^Handler 'NOT_CALLABLE' on module 'lt_app' is not callable$"):
        load_handler("lt_app.NOT_CALLABLE")


# --- what loads --------------------------------------------------------------------------------------------------


def test_module_function(function_code):
    handler = load_handler("lt_app.handler")
    assert handler({}, None) == {"from": "lt_app"}


def test_slash_in_module_path(function_code):
    # GIVEN `dir/app.handler`: a folder in the module path, written with '/'
    # WHEN / THEN it is the module dir.app
    handler = load_handler("lt_dir/lt_app.handler")
    assert handler({}, None) == {"from": "lt_dir.lt_app"}


def test_nested_packages(function_code):
    assert load_handler("lt_pkg.sub.mod.fn")({}, None) == "nested"


def test_file_name_that_is_not_an_identifier(function_code):
    # GIVEN `lt-hyphen.py`: importlib finds it, and AWS's runtime loads `lt-hyphen.handler`
    # WHEN / THEN so does ours
    assert load_handler("lt-hyphen.handler")({}, None) == {"from": "lt-hyphen"}


def test_missing_nested_module(function_code):
    with pytest.raises(ImportModuleError) as err:
        load_handler("lt_pkg.sub.nothere.fn")
    assert err.value.message == "Unable to import module 'lt_pkg.sub.nothere': No module named 'lt_pkg.sub.nothere'"


def test_other_exception_at_import_propagates_as_itself(function_code):
    # GIVEN a module that raises at import time (a missing setting, say)
    # WHEN it is loaded
    # THEN the user's own exception propagates unchanged: it is reported as the user's error, not a fault
    with pytest.raises(ValueError, match=r"^DATABASE_URL is not set$") as err:
        load_handler("lt_raises.handler")
    assert not isinstance(err.value, RuntimeFault)
    report = report_from(err.value)
    assert (report.error_type, report.header_type) == ("ValueError", "Function.ValueError")


# --- path tricks -------------------------------------------------------------------------------------------------

SENTINEL_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

def handler(event, context):
    return "outside"
"""


@pytest.mark.parametrize(
    "spec",
    ["../x.handler", "/etc/passwd.handler", "a..b.handler", "./x.handler", "a/../x.handler", "x\x00.handler"],
)
def test_path_tricks_never_import_anything(task_root, tmp_path, spec):
    # GIVEN modules outside the task root, and `a/b.py` inside it, each leaving a marker when imported
    marker = tmp_path / "imported.marker"
    for relpath in ("x.py", "etc/passwd.py", "task/a/b.py", "task/a/x.py"):
        write(tmp_path, relpath, SENTINEL_MODULE.format(marker=str(marker)))
    modules_before = set(sys.modules)

    # WHEN a handler spec tries to climb out of the task root (or hides an empty path segment)
    with pytest.raises(ImportModuleError) as err:
        load_handler(spec)

    # THEN it is an ImportModuleError naming the module, and nothing at all was imported
    module = spec.rsplit(".", 1)[0]
    assert err.value.message.startswith(f"Unable to import module '{module}': ")
    assert not marker.exists()
    assert set(sys.modules) == modules_before


# --- differential: awslambdaric's own loader ---------------------------------------------------------------------

SHARED_SPECS = [
    "nodot",
    "sys.handler",
    "lt_missing.handler",
    "lt_uses_dep.handler",
    "lt_broken.handler",
    "lt_app.nothere",
    "lt_app.handler",
    "lt_dir/lt_app.handler",
    "lt_pkg.sub.mod.fn",
    "lt_pkg.sub.nothere.fn",
    "lt-hyphen.handler",
    "lt_raises.handler",
]


def _outcome(load, spec):
    """What loading `spec` does, in comparable terms."""
    try:
        handler = load(spec)
    except RuntimeFault as fault:
        return ("fault", fault.error_type, fault.message, fault.stack_trace)
    except FaultException as fault:
        return ("fault", fault.exception_type, fault.msg, fault.trace or [])
    except Exception as exc:  # the point is to compare whatever escapes
        return ("raised", type(exc).__name__, str(exc), [])
    return ("loaded", handler.__module__, handler.__code__.co_filename, [])


@pytest.mark.parametrize("spec", SHARED_SPECS)
def test_same_outcome_as_awslambdaric(function_code, tmp_path, spec):
    # GIVEN the same function code and handler spec
    # WHEN awslambdaric's loader and ours resolve it, each in a fresh interpreter state
    theirs = _outcome(_get_handler, spec)
    _forget_modules_under(tmp_path)
    ours = _outcome(load_handler, spec)

    # THEN the error type, message and trace are identical (or both load the same function)
    assert ours == theirs


# --- check_no_shadowing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["runtime.py", "telemetry.py", "runtime/__init__.py", "telemetry/__init__.py"])
def test_user_module_named_like_a_runtime_package_is_shadowed(tmp_path, entry):
    # GIVEN a function's code holding a module named like one of the runtime's packages
    write(tmp_path, entry, "x = 1\n")
    name = entry.split("/")[0].removesuffix(".py")

    # WHEN / THEN init fails with a fault naming the file and the reason
    with pytest.raises(ModuleShadowed) as err:
        check_no_shadowing(str(tmp_path))
    candidate = os.path.join(tmp_path, name if "/" in entry else entry)
    assert err.value.message == (
        f"Cannot use '{candidate}' as a module: '{name}' is the name of a package of this runtime. Rename your module."
    )
    assert err.value.error_type == "Runtime.ModuleNameConflict"


def test_telemetry_folder_without_init_is_shadowed(tmp_path):
    (tmp_path / "telemetry").mkdir()
    with pytest.raises(ModuleShadowed, match="'telemetry' is the name of a package"):
        check_no_shadowing(str(tmp_path))


def test_ordinary_function_code_is_not_shadowed(tmp_path):
    write(tmp_path, "app.py", HANDLER_SRC)
    write(tmp_path, "runtimes/__init__.py", "")
    check_no_shadowing(str(tmp_path))


@pytest.mark.parametrize("telemetry_imported", [True, False])
def test_the_repo_root_itself_is_not_shadowed(monkeypatch, telemetry_imported):
    # GIVEN the runtime's own tree used as the task root (the example handlers live next to runtime/ and telemetry/)
    if telemetry_imported:
        importlib.import_module("telemetry")
    else:
        monkeypatch.delitem(sys.modules, "telemetry", raising=False)

    # WHEN / THEN its runtime/ and telemetry/ are ours, whether or not telemetry was imported yet
    check_no_shadowing(str(REPO_ROOT))


def test_custom_reserved_names(tmp_path):
    write(tmp_path, "vendor_pkg.py", "")
    check_no_shadowing(str(tmp_path))
    with pytest.raises(ModuleShadowed):
        check_no_shadowing(str(tmp_path), reserved=("vendor_pkg",))
