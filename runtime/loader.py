"""Resolve `_HANDLER` to a callable once, at init, with AWS's Python rules and error messages.

`module.function`, `/` allowed in the module path (`dir/app.handler` = `dir.app`), nested packages. Every failure
becomes a typed `RuntimeFault`; any other exception raised by the user's module while it is imported propagates
unchanged, so it is reported as the user's own error. Imports: stdlib, `runtime.errors`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from runtime.errors import (
    BuiltInModuleConflict,
    HandlerNotFound,
    ImportModuleError,
    MalformedHandlerName,
    ModuleShadowed,
    UserCodeSyntaxError,
)

Handler = Callable[..., Any]
RESERVED_PACKAGES = ("runtime", "telemetry")
_OUR_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # the folder holding runtime/


def _module_name(modname: str) -> str:
    """`dir/app` → `dir.app`; path tricks (`../x`, `/abs/x`, empty segments) are refused as imports.

    Only empty segments are refused (they make relative imports or climb out): a file name that is not an
    identifier (`my-app.py`) is importable by `importlib`, and AWS's runtime loads `my-app.handler`.
    """
    dotted = modname.replace("/", ".")
    segments = dotted.split(".")
    if not all(segment and "\0" not in segment for segment in segments):
        raise ImportModuleError(
            f"Unable to import module '{modname}': a handler module must be a dotted path of module names "
            "below LAMBDA_TASK_ROOT (no '..', absolute paths or empty parts)"
        )
    return dotted


def check_no_shadowing(task_root: str, reserved: Iterable[str] = RESERVED_PACKAGES) -> None:
    """Fail init when the function's code holds a module named like one of the runtime's packages.

    The runtime's own folder comes first on `sys.path`, so such a module would silently never be imported.
    The runtime's own folder itself (which holds `runtime/` and `telemetry/`) is never a conflict, whether or not
    those packages were imported yet.
    """
    for name in reserved:
        loaded = sys.modules.get(name)
        ours = os.path.dirname(os.path.realpath(loaded.__file__)) if loaded and loaded.__file__ else None
        for candidate in (os.path.join(task_root, name), os.path.join(task_root, name + ".py")):
            if not os.path.exists(candidate):
                continue
            real = os.path.realpath(candidate)
            if ours is not None and real in (ours, os.path.join(ours, "__init__.py")):
                continue
            if real in (os.path.join(_OUR_ROOT, name), os.path.join(_OUR_ROOT, name + ".py")):
                continue
            raise ModuleShadowed(
                f"Cannot use '{candidate}' as a module: '{name}' is the name of a package of this runtime. "
                "Rename your module."
            )


def load_handler(spec: str) -> Handler:
    """Import the handler's module and return the function, raising a `RuntimeFault` on every known failure."""
    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError as exc:
        raise MalformedHandlerName(f"Bad handler '{spec}': {exc}") from None
    if not modname or not fname:
        raise MalformedHandlerName(f"Bad handler '{spec}': module and function names must not be empty")
    if modname.split(".")[0] in sys.builtin_module_names:
        raise BuiltInModuleConflict(f"Cannot use built-in module {modname} as a handler module")
    dotted = _module_name(modname)
    try:
        module = importlib.import_module(dotted)
    except ImportError as exc:
        raise ImportModuleError(f"Unable to import module '{modname}': {exc}") from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise UserCodeSyntaxError(f"Syntax error in module '{modname}': {exc}", trace) from None
    try:
        handler = getattr(module, fname)
    except AttributeError:
        raise HandlerNotFound(f"Handler '{fname}' missing on module '{modname}'") from None
    if not callable(handler):
        raise HandlerNotFound(f"Handler '{fname}' on module '{modname}' is not callable")
    return handler  # type: ignore[no-any-return]
