"""The ``edgevid`` command. Each subcommand is a thin wrapper over a library function.

Library code raises :class:`edgevid.errors.EdgevidError`; this is the only place that
turns one into a message on stderr and an exit code. An OSError (a full disk, a read-only
folder, an output path that is a folder) becomes one line naming the path and the cause,
exit 1.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

import click

from edgevid import __version__
from edgevid.core.redact import redact
from edgevid.errors import EdgevidError

# torch's OpenMP threads spin while they wait for work by default. On a machine that runs
# anything else (a shared CI box, an edge box with its camera pipeline) the spinning threads
# take the cores from the ones with work; on a quiet machine the two are within noise. Set
# before torch is first imported (every command imports it lazily); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class EdgevidGroup(click.Group):
    """A click group that reports every error as one line on stderr, never a traceback.

    edgevid errors exit 2 (or their own code); usage errors (a bad option value, a missing
    argument) exit 2 too, as one line that points at the command's --help; operating-system
    errors (disk full, read-only, permission, not a folder) exit 1.
    """

    def main(self, args=None, prog_name=None, **extra):  # type: ignore[override]
        try:
            with _sigterm_interrupts():
                rv = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "edgevid"
            message = redact(e.format_message())
            click.echo(f"edgevid: error: {message} (see '{where} --help')", err=True)
            _exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"edgevid: error: {redact(e.format_message())}", err=True)
            _exit(e.exit_code)
        except click.Abort:
            click.echo("edgevid: aborted", err=True)
            _exit(1)
        _exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgevidError as e:
            click.echo(f"edgevid: error: {redact(str(e))}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:
            click.echo(f"edgevid: error: {redact(os_error_line(e))}", err=True)
            ctx.exit(1)
        except Terminated:
            click.echo("edgevid: terminated (SIGTERM); nothing incomplete was kept", err=True)
            ctx.exit(128 + signal.SIGTERM)
        except KeyboardInterrupt:
            click.echo("edgevid: interrupted", err=True)
            ctx.exit(130)


def _exit(code: int) -> None:
    """Exit with ``code``. A thread still blocked in native code (a capture thread in
    FFmpeg's read, left behind by a stop that does not wait out the read timeout) would
    abort the interpreter's shutdown ("exception not rethrown"): every output is closed by
    now, so the process then ends at once, after flushing stdout and stderr."""
    if any(getattr(t, "native_blocking", False) and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, systemd) as an exception: the same unwinding as
    Ctrl-C, so atomic writes discard their temporary files and finished ones are kept."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (where SIGTERM would
    otherwise kill the process outright); a command may install its own handler."""
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield  # signals go to the main thread only; a handler already installed stays
        return

    def terminate(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def os_error_line(e: OSError) -> str:
    """``PATH: cause`` for an OSError, on one line (the path the user gave, where known)."""
    cause = e.strerror or (os.strerror(e.errno) if e.errno else "") or str(e) or type(e).__name__
    cause = " ".join(str(cause).split())
    where = [str(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{' -> '.join(where)}: {cause}" if where else cause


@click.group(cls=EdgevidGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="edgevid")
@click.option("--verbose", "-v", count=True, help="Debug log lines on stderr.")
@click.option("--quiet", "-q", count=True,
              help="Warnings and errors only, no progress bars (-qq: errors only).")  # fmt: skip
def main(verbose: int, quiet: int) -> None:
    """edgevid: video action recognition from training to real-time edge deployment.

    \b
    The pipeline, one command per stage:
      edgevid data synth OUT            make a synthetic motion dataset
      edgevid train --variant ... --data ROOT
      edgevid prune --checkpoint RUN/best --variant prune4
      edgevid export --variant prune4 --fp16
      edgevid compile prune4.onnx       on a Jetson: a TensorRT engine, cached
      edgevid run --source /dev/video0 --model prune4.onnx
    Or let measurements choose the model for this device:
      edgevid plan --checkpoint RUN/best --data ROOT --fps 30 --every 8 --max-drop 1
    Or all of it at once, offline on a CPU: edgevid demo
    Your environment, for a bug report: edgevid checks

    \b
    Output: results on stdout (tables, or JSON with --json); progress, log lines, warnings
    and errors on stderr, through Python logging (logger "edgevid"; -v / -q set its level).
    Documentation: docs/ in the source tree (mkdocs serve), CLI reference in docs/cli.md.
    """
    _quiet_libraries()
    configure_logging(verbose - quiet)


class _StderrHandler(logging.Handler):
    """Log records as plain lines on the current stderr (click's, so tests capture it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def configure_logging(verbosity: int) -> None:
    """The "edgevid" logger: INFO by default, DEBUG with -v, WARNING with -q, ERROR with -qq."""
    from edgevid import progress

    levels = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
    level = levels[max(-2, min(1, verbosity))]
    logger = logging.getLogger("edgevid")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    progress.set_quiet(verbosity < 0)


def _quiet_libraries() -> None:
    """edgevid draws its own progress bars; keep the libraries' own bars and logs out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # Seeded runs give the same numbers whatever the machine's load: no BLAS/OpenMP thread
    # counts chosen at run time (the count itself is fixed per run by the trainer).
    os.environ.setdefault("MKL_DYNAMIC", "FALSE")
    os.environ.setdefault("OMP_DYNAMIC", "FALSE")


# One module per stage; each lists its click commands in COMMANDS.
_COMMAND_MODULES = (
    "data", "models", "train", "export", "compile", "run", "bench", "plan", "demo", "checks",
)  # fmt: skip


for _name in _COMMAND_MODULES:
    for _command in importlib.import_module(f"edgevid.cli.{_name}").COMMANDS:
        main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
