"""Run user code in a persistent namespace and capture what it printed, returned and raised.

Used by `execute_python` on a real scene (on the main thread, through the gateway). The
value of a trailing expression is returned as its repr, like the interactive console.

A deadline really stops the code: a watchdog thread raises `ExecutionStopped` in the running
thread (`PyThreadState_SetAsyncExc`), again every second if the code catches it. Python checks
for it between bytecodes, so code inside one long C call (a library function) stops only when
that call returns; the caller says so. The same watchdog is the memory guard: when the process's
resident memory grows by more than `memory_bytes` over what it was when the code started, the
code is stopped the same way and reported as a MemoryError. No process-wide limit (RLIMIT_AS)
is set, because inside Slicer it would cap Slicer itself and fail unrelated allocations.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import io
import os
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any

from ..core.models import PythonResult

_MAX_OUTPUT = 100_000
MAX_NAMESPACES = 64  # execute_python namespaces kept (least recently used dropped first)


def _clip(text: str) -> str:
    if len(text) <= _MAX_OUTPUT:
        return text
    return text[:_MAX_OUTPUT] + f"\n... [{len(text) - _MAX_OUTPUT} more characters cut]"


class ExecutionStopped(BaseException):
    """Raised inside user code whose deadline passed (BaseException: a bare `except Exception` lets it by)."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Ask `thread_id` to raise `exc` at its next bytecode (None withdraws a pending request)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None
    )


class MemoryExceeded(ExecutionStopped):
    """Raised inside user code that grew the process past its memory budget."""


def _resident_bytes() -> int | None:
    """The process's resident set size (Linux /proc); None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class Deadline:
    """Stops the code running on the calling thread after `seconds`, or once the process's resident memory
    has grown by more than `memory_bytes` since the start. Only this code is limited: the process (Slicer
    itself) has no cap, unlike RLIMIT_AS. `stopped` / `over_memory` say what happened."""

    _POLL_S = 0.05

    def __init__(self, seconds: float | None, memory_bytes: int | None = None):
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self.stopped = False
        self.over_memory = False
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._watchdog: threading.Thread | None = None

    def __enter__(self) -> Deadline:
        self._base = _resident_bytes() if self.memory_bytes is not None else None
        if self.seconds is not None or self._base is not None:
            self._watchdog = threading.Thread(target=self._watch, name="execute-python-deadline", daemon=True)
            self._watchdog.start()
        return self

    def _watch(self) -> None:
        started = time.monotonic()
        next_ask = None if self.seconds is None else started + self.seconds
        while not self._done.wait(self._POLL_S):
            now = time.monotonic()
            grown = None
            if self._base is not None:
                rss = _resident_bytes()
                grown = None if rss is None else rss - self._base
            with self._lock:
                if self._done.is_set():
                    return
                if grown is not None and grown > self.memory_bytes and not self.stopped:
                    self.over_memory = self.stopped = True
                    _raise_in(self._thread_id, MemoryExceeded)
                    next_ask = now + 1.0
                elif next_ask is not None and now >= next_ask:
                    self.stopped = True
                    _raise_in(self._thread_id, MemoryExceeded if self.over_memory else ExecutionStopped)
                    next_ask = now + 1.0  # the code caught it: ask again

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._done.set()
            if self.stopped:
                _raise_in(self._thread_id, None)  # one not yet delivered must not hit the caller


def run_code(
    code: str,
    namespace: dict[str, Any],
    timeout_s: float | None = None,
    memory_bytes: int | None = None,
) -> PythonResult:
    """Execute `code` in `namespace`, stopping it after `timeout_s`; never raises for the code's errors."""
    started = time.monotonic()
    deadline = Deadline(timeout_s, memory_bytes)
    try:
        with deadline:
            result = _run(code, namespace)
    except ExecutionStopped:  # delivered between the code's end and the watchdog's stop
        result = PythonResult(success=False)
    if deadline.over_memory:
        result.success = False
        result.result = None
        result.error = (
            f"MemoryError: the code was stopped after it grew the server by more than {memory_bytes:,} bytes "
            "(limits.python_memory_bytes); its variables stay in the namespace: `del` the big ones to free "
            "the memory, work in smaller pieces, or raise the limit."
        )
    elif deadline.stopped:
        result.success = False
        result.result = None
        result.error = (
            f"ExecutionStopped: the code was stopped after {time.monotonic() - started:.1f} s "
            f"(timeouts.python_s = {timeout_s:g}); what it did before stays done and its variables stay "
            "in the namespace. Make it faster, run it in steps, or raise timeouts.python_s."
        )
    elif result.error and result.error.startswith("MemoryError") and memory_bytes is not None:
        result.error += (
            f" (execute_python may add at most {memory_bytes:,} bytes of memory: limits.python_memory_bytes)"
        )
    return result


def _run(code: str, namespace: dict[str, Any]) -> PythonResult:
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


def _removed_node(value: Any) -> bool:
    """A wrapped MRML node no longer in a scene (RemoveNode clears its scene)."""
    try:
        return bool(value.IsA("vtkMRMLNode")) and value.GetScene() is None
    except Exception:  # not a VTK object (or one without these methods)
        return False


def _holds_removed_node(value: Any) -> bool:
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        items = value.values() if isinstance(value, dict) else value
        # the item types first (at C speed): a kept list of a million numbers is not asked a million
        # times for IsA on every later call
        from vtkmodules.vtkCommonCore import vtkObjectBase

        if not any(issubclass(kind, vtkObjectBase) for kind in set(map(type, items))):
            return False
        return any(_removed_node(item) for item in items)
    return _removed_node(value)


def release_removed_nodes(namespace: dict[str, Any]) -> list[str]:
    """Drop the names bound to nodes no longer in the scene (or to a list, tuple, set or dict holding
    one); returns them. A namespace outlives its call (up to MAX_NAMESPACES are kept), and a name
    still bound to a removed volume keeps the node and all its voxels alive: code that loads and
    removes volumes (`n = getNode(...); mrmlScene.RemoveNode(n)`) would pin one per namespace."""
    dropped = [name for name, value in namespace.items() if _holds_removed_node(value)]
    for name in dropped:
        del namespace[name]
    return dropped


class Namespaces:
    """One persistent namespace per key (tools/clients.py issues the keys); the `limit` most
    recently used are kept, so keys issued to sessionless clients cannot pile up."""

    def __init__(self, limit: int = MAX_NAMESPACES) -> None:
        self.limit = limit
        self._spaces: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_key: str) -> dict[str, Any]:
        with self._lock:
            space = self._spaces.pop(session_key, None) or {"__name__": "__slicer_mcp__"}
            self._spaces[session_key] = space
            while len(self._spaces) > self.limit:
                self._spaces.popitem(last=False)
            return space
