"""``edgevid checks``: the environment report (versions, providers, devices, CPU)."""

from __future__ import annotations

import click

from edgevid.cli._options import emit_json, json_option


@click.command("checks")
@json_option("The report")
def checks(json_path: str | None) -> None:
    """Print the environment: what to paste into a bug report.

    \b
    Python and edgevid; numpy, OpenCV (its FFmpeg / GStreamer video I/O), ONNX Runtime (its
    execution providers), OpenVINO (its devices), TensorRT, CUDA (torch, nvidia-smi), torch
    and transformers if installed; the CPU model, the flags the INT8 and bf16 paths depend on
    (avx512_vnni, avx512_bf16, amx_*), cores and memory.

    \b
    Examples:
      edgevid checks
      edgevid checks --json env.json
    """
    from edgevid.checks import environment_report, format_report

    report = environment_report()
    if json_path is None or not emit_json(json_path, report):
        click.echo(format_report(report))


COMMANDS = [checks]
