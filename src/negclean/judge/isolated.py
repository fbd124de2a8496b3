"""Run an engine (an object doing native work, such as llama.cpp) in a child process, so that a native
crash (SIGSEGV, SIGILL, abort) fails the call that met it instead of killing the caller.

The child is a fresh interpreter (``python -c``, with the parent's ``sys.path``; nothing of the
parent's ``__main__`` is imported, so it works from scripts, notebooks and the CLI alike). It builds
the engine with ``factory(**kwargs)`` (``factory`` is ``"module:name"``) and then serves method calls
over a pipe, one at a time:

- ``call(method, *args, **kwargs)`` returns the method's value;
- ``stream(method, *args, **kwargs)``: the method returns an iterable, and each item comes back as
  soon as the child has made it, so the caller can act on it (store a verdict) while the child goes on.

Values cross the pipe pickled (both ends are this program; nothing else reads the pipe). An exception
raised by the engine is raised again in the parent (as ``EngineError`` when it does not pickle). When
the child dies, killed by a signal or exiting on its own, the pending call raises ``EngineDied``, a
``BackendError`` (exit 5) naming the signal; the child's last lines of output are in its
``output_tail`` (its stdout and stderr are captured, so native chatter never mixes with the caller's
output; they are logged at DEBUG level).

The child never outlives its parent: it ends with ``close()``, when the ``ChildEngine`` is garbage
collected or the interpreter exits, and, if the parent is killed outright, when it sees it gone (its
pipe's end of file, or a new parent process id, checked every half second). It ignores SIGINT: Ctrl-C
interrupts the parent, which then stops the child. A call left unfinished (Ctrl-C, an exception in the
code consuming a stream) stops the child too; the next call starts a fresh one.
"""

from __future__ import annotations

import collections
import importlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Generator, Mapping
from multiprocessing.connection import Connection, Pipe
from multiprocessing.reduction import ForkingPickler
from typing import IO, Any

from negclean.errors import BackendError, NegcleanError

log = logging.getLogger(__name__)

#: seconds between the child's checks that its parent is still there
PARENT_CHECK_S = 0.5
#: seconds a child gets to end by itself (after close, or after its pipe closed) before it is killed
EXIT_WAIT_S = 5.0
#: lines of the child's output kept for the error message of a crash
TAIL_LINES = 20

_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from negclean.judge.isolated import serve; serve(int(sys.argv[2]))"
)


class EngineError(RuntimeError):
    """The engine raised an exception that could not be sent back as itself (its type and message)."""


class EngineDied(BackendError):
    """The engine's process ended while a call was pending.

    Attributes:
        returncode: the child's exit status (negative: killed by that signal).
        signal_name: ``"SIGSEGV"`` and the like, or None when it exited on its own.
        output_tail: the child's last lines of output.
    """

    def __init__(self, name: str, *, returncode: int, output_tail: tuple[str, ...] = ()):
        self.name = name
        self.returncode = returncode
        self.signal_name = signal_name(returncode)
        self.output_tail = output_tail
        super().__init__(f"{name}: the engine process {self.how}")

    @property
    def how(self) -> str:
        """What happened, e.g. ``was killed by SIGSEGV (segmentation fault)``."""
        if self.signal_name is None:
            return f"exited unexpectedly with code {self.returncode}"
        described = signal.strsignal(-self.returncode) or ""
        return f"was killed by {self.signal_name}" + (f" ({described.lower()})" if described else "")


def signal_name(returncode: int | None) -> str | None:
    """``SIGSEGV`` for a process status of -11, None for statuses that are not a signal."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class ChildEngine:
    """An engine object living in a child process (see the module docstring).

    Args:
        factory: ``"module:name"`` of a callable returning the engine; importable with this
            process's ``sys.path``.
        kwargs: keyword arguments for ``factory`` (pickled).
        name: how messages name the engine.
    """

    def __init__(self, factory: str, *, kwargs: Mapping[str, Any] | None = None, name: str = "engine"):
        self.factory = factory
        self.kwargs = dict(kwargs or {})
        self.name = name
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._reader: threading.Thread | None = None
        self._finalizer: weakref.finalize[..., Any] | None = None
        self._owner: int | None = None  # thread streaming from the child, if any
        with self._lock:
            self._start()

    @property
    def pid(self) -> int | None:
        """Process id of the child now serving, None when none is running."""
        return self._proc.pid if self._proc is not None else None

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """``engine.method(*args, **kwargs)`` in the child; its value."""
        with self._lock:
            self._ensure_started()
            self._send(("call", False, method, args, kwargs))
            kind, payload = self._receive_or_stop()
            return self._answer(kind, payload, expect="result")

    def stream(self, method: str, /, *args: Any, **kwargs: Any) -> Generator[Any, None, None]:
        """Iterate ``engine.method(*args, **kwargs)`` in the child, each item as soon as it is made.

        Leaving the loop early stops the child (the next call starts a fresh one); close the iterator
        (``contextlib.closing``) rather than leave that to the garbage collector."""
        with self._lock:
            self._owner = threading.get_ident()
            try:
                self._ensure_started()
                proc = self._proc
                self._send(("call", True, method, args, kwargs))
                finished = False
                try:
                    while True:
                        kind, payload = self._receive()
                        if kind != "item":
                            finished = True
                            self._answer(kind, payload, expect="done")
                            return
                        yield payload
                finally:
                    if not finished and self._proc is proc:
                        self._stop(kill=True)
            finally:
                self._owner = None

    def close(self) -> None:
        """End the child (waits up to ``EXIT_WAIT_S`` for it to free its resources, then kills it)."""
        if self._owner == threading.get_ident():  # a stream of this thread is suspended and holds the lock
            self._stop()
            return
        with self._lock:
            self._stop()

    def __enter__(self) -> ChildEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _start(self) -> None:
        parent_end, child_end = Pipe(duplex=True)
        args = [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(child_end.fileno())]
        try:
            proc = subprocess.Popen(
                args,
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        except OSError as exc:
            parent_end.close()
            raise BackendError(f"{self.name}: could not start the engine process ({exc})") from exc
        finally:
            child_end.close()
        self._proc, self._conn = proc, parent_end
        self._tail = collections.deque(maxlen=TAIL_LINES)
        self._reader = threading.Thread(
            target=_read_output, args=(proc.stdout, self._tail, self.name), name=f"{self.name}-output", daemon=True
        )
        self._reader.start()
        self._finalizer = weakref.finalize(self, _end_child, proc, parent_end, EXIT_WAIT_S)
        try:
            self._send(("start", self.factory, self.kwargs))
            kind, payload = self._receive()
        except EngineDied:
            raise
        except BaseException:  # kwargs that do not pickle, Ctrl-C while the engine loads
            self._stop(kill=True)
            raise
        self._answer(kind, payload, expect="ready")

    def _ensure_started(self) -> None:
        if self._proc is None:
            self._start()

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._conn is None:
            raise EngineError(f"{self.name}: the engine process was closed")
        try:  # an argument that does not pickle raises here with nothing written
            self._conn.send(message)
        except (BrokenPipeError, ConnectionResetError):
            raise self._died() from None

    def _receive(self) -> tuple[str, Any]:
        if self._conn is None:
            raise EngineError(f"{self.name}: the engine process was closed")
        try:
            reply: tuple[str, Any] = self._conn.recv()  # what _reply sent: (kind, payload)
            return reply
        except (EOFError, ConnectionResetError, BrokenPipeError):
            raise self._died() from None

    def _receive_or_stop(self) -> tuple[str, Any]:
        """A reply; anything that leaves it unread (Ctrl-C) stops the child, which would answer out of turn."""
        try:
            return self._receive()
        except EngineDied:
            raise
        except BaseException:
            self._stop(kill=True)
            raise

    def _answer(self, kind: str, payload: Any, *, expect: str) -> Any:
        if kind == expect:
            return payload
        if kind == "error":
            if expect == "ready":  # the engine could not be built: the child is ending
                self._stop()
            raise payload
        self._stop(kill=True)
        raise EngineError(f"{self.name}: unexpected reply {kind!r} from the engine process (wanted {expect!r})")

    def _died(self) -> EngineDied:
        proc, reader = self._proc, self._reader
        assert proc is not None
        try:
            code = proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:  # it closed its pipe but lives on: do not leave it behind
            proc.kill()
            code = proc.wait()
        if reader is not None:
            reader.join(timeout=2.0)
        died = EngineDied(self.name, returncode=code, output_tail=tuple(self._tail))
        self._forget()
        return died

    def _stop(self, *, kill: bool = False) -> None:
        """End the child: ``kill`` at once when it is busy with a call nobody will read (Ctrl-C, a stream
        left early), else let it free its resources first."""
        if kill and self._proc is not None:
            self._proc.kill()
        if self._finalizer is not None:
            self._finalizer()  # runs _end_child once
        self._forget()

    def _forget(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = self._reader = self._finalizer = None


def _end_child(proc: subprocess.Popen[bytes], conn: Connection, wait_s: float) -> None:
    """Ask the child to end (close, then end of file), wait a little, then kill it."""
    try:
        conn.send(("close",))
    except (OSError, ValueError):
        pass
    try:
        conn.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_output(stream: IO[bytes], tail: collections.deque[str], name: str) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip()
        if line:
            tail.append(line)
            log.debug("%s: %s", name, line)
    stream.close()


# -- the child's side ---------------------------------------------------------------------------


def serve(fd: int) -> None:
    """The child's main loop: build the engine, then answer calls until close or end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    _watch_parent(os.getppid())
    engine = None
    try:
        kind, factory, kwargs = conn.recv()
        try:
            module, _, name = factory.partition(":")
            engine = getattr(importlib.import_module(module), name)(**kwargs)
        except BaseException as exc:
            conn.send(("error", _portable(exc)))
            return
        conn.send(("ready", None))
        while True:
            message = conn.recv()
            if message[0] == "close":
                return
            _, streamed, method, args, kwargs = message
            try:
                value = getattr(engine, method)(*args, **kwargs)
                if streamed:
                    for item in value:
                        _reply(conn, ("item", item), method)
                    _reply(conn, ("done", None), method)
                else:
                    _reply(conn, ("result", value), method)
            except Exception as exc:
                conn.send(("error", _portable(exc)))
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the parent is gone
        return
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()


def _reply(conn: Connection, message: tuple[Any, ...], method: str) -> None:
    try:  # pickled first, so that a value that does not pickle leaves the pipe clean
        data = ForkingPickler.dumps(message)
    except Exception as exc:
        raise EngineError(f"the engine's answer to {method}() does not pickle ({type(exc).__name__}: {exc})") from None
    conn.send_bytes(data)


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling; else, for a NegcleanError, one with its message and
    exit code, and for anything else an EngineError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        pass
    if isinstance(exc, NegcleanError):
        copy = NegcleanError(str(exc))
        copy.exit_code = exc.exit_code
        return copy
    sys.stderr.write("".join(traceback.format_exception(exc)))  # the parent logs it at DEBUG level
    return EngineError(f"{type(exc).__name__}: {exc}")


def _watch_parent(ppid: int) -> None:
    """End this process when its parent is gone (it was killed: nobody will read our answers)."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != ppid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
