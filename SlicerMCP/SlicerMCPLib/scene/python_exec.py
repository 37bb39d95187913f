"""Run user code in a persistent namespace and capture what it printed, returned and raised.

Used by `execute_python` on a real scene (on the main thread, through the gateway). The
value of a trailing expression is returned as its repr, like the interactive console.

A deadline really stops the code: a watchdog thread raises `ExecutionStopped` in the running
thread (`PyThreadState_SetAsyncExc`), again every second if the code catches it. Python checks
for it between bytecodes, so code inside one long C call (a library function) stops only when
that call returns; the caller says so. While the code runs, the process may grow by at most
`memory_bytes` of address space (RLIMIT_AS, where the platform has it): a bigger allocation is
a MemoryError in the user's code, not the machine swapping or the OOM killer.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import io
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from ..core.models import PythonResult

_MAX_OUTPUT = 100_000


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


class Deadline:
    """Stops the code running on the calling thread after `seconds`; `stopped` says whether it did."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.stopped = False
        self._thread_id = threading.get_ident()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._watchdog: threading.Thread | None = None

    def __enter__(self) -> Deadline:
        if self.seconds is not None:
            self._watchdog = threading.Thread(target=self._watch, name="execute-python-deadline", daemon=True)
            self._watchdog.start()
        return self

    def _watch(self) -> None:
        wait = self.seconds
        while not self._done.wait(wait):
            with self._lock:
                if self._done.is_set():
                    return
                self.stopped = True
                _raise_in(self._thread_id, ExecutionStopped)
            wait = 1.0  # the code caught it: ask again

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._done.set()
            if self.stopped:
                _raise_in(self._thread_id, None)  # one not yet delivered must not hit the caller


@contextlib.contextmanager
def memory_guard(limit_bytes: int | None) -> Iterator[None]:
    """Cap the process's address space at its current size plus `limit_bytes` while the block runs."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_AS
        yield
        return
    current = _address_space_bytes()
    if limit_bytes is None or current is None or not hasattr(resource, "RLIMIT_AS"):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = current + limit_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield  # an operator's own, tighter limit stays
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _address_space_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def run_code(
    code: str,
    namespace: dict[str, Any],
    timeout_s: float | None = None,
    memory_bytes: int | None = None,
) -> PythonResult:
    """Execute `code` in `namespace`, stopping it after `timeout_s`; never raises for the code's errors."""
    started = time.monotonic()
    deadline = Deadline(timeout_s)
    try:
        with deadline, memory_guard(memory_bytes):
            result = _run(code, namespace)
    except ExecutionStopped:  # delivered between the code's end and the watchdog's stop
        result = PythonResult(success=False)
    if deadline.stopped:
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


class Namespaces:
    """One persistent namespace per client session."""

    def __init__(self) -> None:
        self._spaces: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, session_key: str) -> dict[str, Any]:
        with self._lock:
            return self._spaces.setdefault(session_key, {"__name__": "__slicer_mcp__"})
