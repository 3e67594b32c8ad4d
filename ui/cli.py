"""The ``attune`` command line.

Each subcommand lives in ``ui/commands/<name>.py`` and provides
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int``. Command modules import pylsl-using code lazily, inside
``func``, so that the LSL configuration (``--lsl-scope``) is chosen first.

Exit codes (every command)
--------------------------
* 0 ok;
* 2 unusable input or arguments: one line on stderr says what was wrong and how to fix it;
* 1 an internal error (a bug): one line, ``-vv`` shows the traceback;
* 130 after Ctrl-C (SIGINT), 143 after SIGTERM (``kill``): both end a session the same way — the
  recording is closed with its footers, the summary is printed — only the code says which signal it was;
* 141 when the program reading the output went away (``attune analyze f.xdf | head -1``): nothing more is
  printed, quietly, as a program killed by SIGPIPE would end.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from attune_monitor.errors import AttuneError

from .errors import os_error_text

__all__ = [
    "COMMANDS", "EXIT_SIGINT", "EXIT_SIGTERM", "EXIT_BROKEN_PIPE", "EXIT_INTERNAL", "Terminated", "StopSignals",
    "OncePerMessage", "build_parser", "main"
]

#: Subcommands in the order ``attune --help`` lists them.
COMMANDS = (
    "demo",
    "simulate",
    "streams",
    "monitor",
    "analyze",
    "evaluate",
    "replay",
    "export",
    "bridge",
)

#: Exit codes after a stop signal (128 + signal number, as a shell reports a process killed by it).
EXIT_SIGINT = 128 + signal.SIGINT    # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143
EXIT_BROKEN_PIPE = 128 + 13          # 141, SIGPIPE
EXIT_INTERNAL = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that ``kill`` is handled like Ctrl-C.

    SIGTERM, raised where Ctrl-C would be, so that every ``except KeyboardInterrupt`` (close the recording,
    print the summary) handles ``kill`` exactly like Ctrl-C.
    """

    reason = "SIGTERM"


class StopSignals:
    """SIGINT and SIGTERM end the command like Ctrl-C; remembers which one came (for the exit code).

    The first signal raises :class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM) in the main thread;
    further ones while the session closes (recording footers, summary) are ignored, so a second Ctrl-C cannot
    cut a recording short; a third one restores the default handlers and stops at once.
    """

    def __init__(self):
        self.received: int | None = None
        self.count = 0
        self._previous: dict = {}

    def install(self) -> StopSignals:
        """Handle SIGINT and SIGTERM (main thread only; elsewhere left alone); returns self."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # not the main thread (embedded use): leave the handlers alone
                pass
        return self

    def uninstall(self) -> None:
        """Restore the signal handlers that were there before :meth:`install`."""
        for sig, old in self._previous.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError, TypeError):
                pass
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.received is None:
            self.received = signum
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if self.count >= 3:
            self.uninstall()
            raise KeyboardInterrupt()
        try:
            sys.stderr.write("attune: closing the session (recording footers, summary); "
                             "a third signal stops at once.\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def exit_code(self, exc: BaseException | None = None) -> int:
        """The exit code of a command that a signal ended (``exc``: the interrupt it raised, if it escaped)."""
        if self.received == signal.SIGTERM or isinstance(exc, Terminated):
            return EXIT_SIGTERM
        return EXIT_SIGINT


class OncePerMessage(logging.Filter):
    """Let each distinct warning through once.

    The live session re-assigns its streams every second, and the same roster warning 62 times in a minute hides
    everything else.
    """

    def __init__(self):
        super().__init__()
        self._seen: set = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """True for a record below WARNING or a warning not seen before."""
        if record.levelno < logging.WARNING:
            return True
        try:
            key = (record.name, record.levelno, record.getMessage())
        except Exception:  # noqa: BLE001 - a malformed log call: let logging report it
            return True
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand that is installed."""
    parser = argparse.ArgumentParser(
        prog="attune",
        description=(
            "Attune: live interpersonal physiological synchrony. A flagged drop in "
            "synchrony is a prompt to check in, never a diagnosis."
        ),
        epilog="Exit codes: 0 ok, 2 unusable input or arguments (one line says why), 1 internal error, "
               "130 Ctrl-C, 143 SIGTERM, 141 output pipe closed.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"attune_monitor.ui.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"attune_monitor.ui.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def _configure_logging(verbose: int) -> None:
    """Log lines to (the current) stderr, each distinct warning once per run."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "attune_cli", False)]
    if not root.handlers or ours:  # an embedding program's (or pytest's) own handlers are left alone
        for h in ours:  # main() called again in one process: a fresh handler on the current stderr
            root.removeHandler(h)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(OncePerMessage())
        handler.attune_cli = True
        root.addHandler(handler)
        root.setLevel(level)


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush cannot complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run ``attune``; return the process exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or an argparse error (2, its one line already printed)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    _configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    stops = StopSignals().install()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at interpreter exit: a reader that went away is a BrokenPipeError caught below
        if stops.received is not None and code in (0, EXIT_SIGINT):
            code = stops.exit_code()  # the command closed cleanly after a stop signal: say which one it was
        return code
    except AttuneError as exc:  # the one place a domain error (bad input: UsageError, RecordingError ...) is said
        _say(f"attune {args.command}: error: {os_error_text(exc) if isinstance(exc, OSError) else exc}")
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt as exc:
        return stops.exit_code(exc)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except MemoryError:
        _say(f"attune {args.command}: error: out of memory; close other programs or analyse a shorter recording.")
        return 2
    except Exception as exc:  # a bug: one line; the traceback with -vv
        if args.verbose >= 2:
            raise
        text = " ".join(str(exc).split())[:300]
        _say(f"attune {args.command}: internal error {type(exc).__name__}: {text} (a bug: please report it; "
             "-vv shows the traceback)")
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        return EXIT_INTERNAL
    finally:
        stops.uninstall()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
