"""Options shared by several commands: one spelling, one meaning, one help text each.

The conventions (docs/cli.md, "Conventions"; tests/test_cli_conventions.py checks them):

- ``-m/--model`` names the model a command runs, in every command that runs one.
- ``-s/--source`` names the video a command reads frames from.
- ``--json [FILE]`` is machine output: JSON written to FILE, or printed on stdout with a bare
  ``--json`` or ``--json -`` (instead of the table, where the command prints one).
- ``--device`` is one of :data:`edgevid.runtime.backends.DEVICES`, default ``auto``.
- ``-q/--quiet`` on a command: no progress bars and no summary (``edgevid -q CMD`` does the
  same for every command, and also hides info lines).
- An old spelling that was renamed stays as a hidden option that still works and says, on
  stderr, which spelling replaces it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgevid.runtime.backends import DEVICES

STDOUT = "-"
log = logging.getLogger("edgevid")

DEVICE_HELP = (
    "auto: GPU if ONNX Runtime (or torch, for a checkpoint) has one, else the faster of ONNX "
    "Runtime and OpenVINO for this graph (timed once, cached in <model>.backend.json); cpu: "
    "ONNX Runtime CPU; cuda; tensorrt; openvino."
)


def json_option(what: str, default: str | None = None) -> Callable:
    """``--json [FILE]``: ``what`` as JSON to FILE, or to stdout (bare ``--json`` or ``-``)."""
    return click.option(
        "--json", "json_path", default=default, is_flag=False, flag_value=STDOUT,
        metavar="[FILE|-]", show_default=default is not None,
        help=f"{what} as JSON: to FILE, or on stdout with a bare --json or '-'.",
    )  # fmt: skip


def device_option(help: str = DEVICE_HELP) -> Callable:
    return click.option(
        "--device", type=click.Choice(DEVICES), default="auto", show_default=True, help=help
    )


def quiet_option(what: str = "No progress bars.") -> Callable:
    return click.option("--quiet", "-q", is_flag=True, help=f"{what} (Same as edgevid -q.)")


def deprecated_alias(old: str, new: str, **kwargs: Any) -> Callable:
    """A hidden ``old`` spelling that still works; it warns once that ``new`` replaces it."""

    def warn(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value not in (None, (), False):
            log.warning("edgevid: warning: %s is deprecated; use %s", old, new)
        return value

    dest = old.lstrip("-").replace("-", "_") + "_deprecated"
    return click.option(old, dest, hidden=True, callback=warn, expose_value=True, **kwargs)


class HiddenArgument(click.Argument):
    """A positional argument kept for old command lines, left out of the usage line."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


def emit_json(dest: str | Path, document: Any) -> bool:
    """Write ``document`` to ``dest`` (atomically) or print it when ``dest`` is ``-``.

    Returns True when it went to stdout (the caller then prints no table)."""
    text = json.dumps(document, indent=2)
    if str(dest) == STDOUT:
        click.echo(text)
        return True
    from edgevid._atomic import write_text

    write_text(Path(dest), text + "\n")
    log.info("wrote %s", dest)
    return False


# --- environment variables and a TOML config file for a command's options -----------------
def option_key(param: click.Parameter) -> str:
    """The name a user knows an option by: its long spelling without dashes (``top-k``)."""
    longs = [o for o in param.opts if o.startswith("--")]
    return (longs[0] if longs else param.opts[0]).lstrip("-")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"{path}: not valid TOML: {e}", param_hint="--config") from None


def settable(command: click.Command, prefix: str, table: str) -> click.Command:
    """Make every option of ``command`` settable from ``<prefix>_<OPTION>`` environment
    variables and from the ``[table]`` of a ``--config FILE`` (TOML; keys are the long option
    names). Precedence: command line > environment > config file > built-in default (click
    resolves in this order: a config file's values are the context's default_map)."""
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    by_key = {option_key(p).replace("_", "-"): p for p in options if p.name != "config"}

    def load(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        if value is None:
            return None
        doc = read_toml(value)
        unknown_tables = sorted(set(doc) - {table})
        if unknown_tables:
            raise click.BadParameter(
                f"{value}: unknown table(s) {', '.join(unknown_tables)}: options go in [{table}]",
                param_hint="--config",
            )
        defaults = {}
        for key, v in doc.get(table, {}).items():
            p = by_key.get(key.replace("_", "-"))
            if p is None:
                raise click.BadParameter(
                    f"{value}: [{table}] has no option {key!r} (keys are the long option "
                    f"names: {', '.join(sorted(by_key))})",
                    param_hint="--config",
                )
            defaults[p.name] = v
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        return value

    config = click.Option(
        ["--config"], type=click.Path(exists=True, dir_okay=False, path_type=Path),
        is_eager=True, expose_value=False, callback=load, envvar=f"{prefix}_CONFIG",
        help=f"TOML file whose [{table}] table sets options by their long names (e.g. "
        f"top-k = 5). Precedence: command line > {prefix}_<OPTION> environment variables > "
        "this file > defaults.",
    )  # fmt: skip
    command.params.append(config)
    for p in options:
        p.envvar = f"{prefix}_{option_key(p).upper().replace('-', '_')}"
    return command
