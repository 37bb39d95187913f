"""Run user code in a persistent namespace and capture what it printed, returned and raised.

Used by `execute_python` on a real scene (on the main thread, through the gateway). The
value of a trailing expression is returned as its repr, like the interactive console.
"""

from __future__ import annotations

import ast
import contextlib
import io
import threading
import traceback
from typing import Any

from ..core.models import PythonResult

_MAX_OUTPUT = 100_000


def _clip(text: str) -> str:
    if len(text) <= _MAX_OUTPUT:
        return text
    return text[:_MAX_OUTPUT] + f"\n... [{len(text) - _MAX_OUTPUT} more characters cut]"


def run_code(code: str, namespace: dict[str, Any]) -> PythonResult:
    """Execute `code` in `namespace`; never raises for errors in the code itself."""
    out, err = io.StringIO(), io.StringIO()
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as exc:
        return PythonResult(
            success=False,
            error=f"SyntaxError: {exc.msg} (line {exc.lineno})",
            traceback="".join(traceback.format_exception_only(type(exc), exc)),
        )
    last_expr = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last_expr = ast.Expression(tree.body.pop().value)
    shown: str | None = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exec(compile(tree, "<execute_python>", "exec"), namespace)
            if last_expr is not None:
                value = eval(compile(last_expr, "<execute_python>", "eval"), namespace)
                shown = None if value is None else repr(value)  # a user __repr__ may raise too
        except BaseException as exc:  # user code: report everything, including SystemExit
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            # drop our own frame so the traceback starts in the user's code
            tb = [tb[0]] + tb[2:] if len(tb) > 2 else tb
            return PythonResult(
                success=False,
                stdout=_clip(out.getvalue()),
                stderr=_clip(err.getvalue()),
                error=f"{type(exc).__name__}: {exc}",
                traceback=_clip("".join(tb)),
            )
    return PythonResult(
        success=True,
        stdout=_clip(out.getvalue()),
        stderr=_clip(err.getvalue()),
        result=None if shown is None else _clip(shown),
    )


class Namespaces:
    """One persistent namespace per client session."""

    def __init__(self) -> None:
        self._spaces: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, session_key: str) -> dict[str, Any]:
        with self._lock:
            return self._spaces.setdefault(session_key, {"__name__": "__slicer_mcp__"})
