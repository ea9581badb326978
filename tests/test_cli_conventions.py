"""The CLI's conventions (edgevid/cli/_options.py, docs/cli.md): one meaning per option name
over every command, run's options from the environment and a TOML file in a documented
order, logging levels, progress on stderr, and `edgevid checks`."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgevid.cli import main
from edgevid.runtime.backends import DEVICES
from tests.conftest import MEDIA

CLIP = MEDIA / "bikes.mp4"


def commands(group: click.Group = main, path: str = "edgevid"):
    """(path, command) of every visible command, subcommands of groups included."""
    for name, cmd in sorted(group.commands.items()):
        if cmd.hidden:
            continue
        if isinstance(cmd, click.Group):
            yield from commands(cmd, f"{path} {name}")
        else:
            yield f"{path} {name}", cmd


def option(cmd: click.Command, long: str) -> click.Option | None:
    return next((p for p in cmd.params if isinstance(p, click.Option) and long in p.opts), None)


# long name -> what every command that has it must agree on
CONVENTIONS = {
    "--model": lambda o: "-m" in o.opts,
    "--source": lambda o: "-s" in o.opts,
    "--json": lambda o: not o.is_flag and o.flag_value == "-" and o.metavar == "[FILE|-]",
    "--device": lambda o: o.default == "auto" and list(o.type.choices) == list(DEVICES),
    "--quiet": lambda o: "-q" in o.opts,
}


@pytest.mark.parametrize("long", list(CONVENTIONS))
def test_one_meaning_per_option_over_every_command(long):
    having = [(path, option(cmd, long)) for path, cmd in commands()]
    having = [(path, o) for path, o in having if o is not None and not o.hidden]
    assert having, f"no command has {long}"
    broken = [path for path, o in having if not CONVENTIONS[long](o)]
    assert not broken, f"{long} breaks the convention in: {', '.join(broken)}"


def test_every_command_that_runs_a_model_takes_dash_m():
    for path in ("edgevid run", "edgevid bench", "edgevid eval"):
        cmd = dict(commands())[path]
        assert option(cmd, "--model") is not None, path


def test_every_visible_option_has_help():
    missing = [
        f"{path} {o.opts[0]}"
        for path, cmd in commands()
        for o in cmd.params
        if isinstance(o, click.Option) and not o.hidden and not o.help
    ]
    assert not missing, missing


def edgevid(*args: str, env: dict | None = None, cwd: Path | None = None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("EDGEVID_RUN_")}
    return subprocess.run([sys.executable, "-m", "edgevid", *args], capture_output=True,
                          text=True, timeout=300, env={**full, **(env or {})}, cwd=cwd)  # fmt: skip


def test_run_options_precedence_cli_over_env_over_config_file(tmp_path):
    """The model that fails to open names where it came from."""
    config = tmp_path / "edgevid.toml"
    config.write_text('[run]\nsource = ["clip.mp4"]\nmodel = "from-config.onnx"\n')
    cases = [  # (args, env, the model the error must name)
        (["--config", str(config)], {}, "from-config.onnx"),
        (["--config", str(config)], {"EDGEVID_RUN_MODEL": "from-env.onnx"}, "from-env.onnx"),
        (["--config", str(config), "-m", "from-cli.onnx"], {"EDGEVID_RUN_MODEL": "from-env.onnx"},
         "from-cli.onnx"),
        ([], {"EDGEVID_RUN_CONFIG": str(config)}, "from-config.onnx"),  # the file itself too
        (["-s", "x.mp4"], {"EDGEVID_RUN_MODEL": "from-env.onnx"}, "from-env.onnx"),
    ]  # fmt: skip
    for args, env, expected in cases:
        r = edgevid("run", *args, "--device", "cpu", env=env, cwd=tmp_path)
        assert r.returncode == 2, (args, env, r.stderr)
        assert r.stderr.count("\n") == 1 and expected in r.stderr, (args, env, r.stderr)


@pytest.mark.slow  # three real runs
def test_run_takes_its_options_from_a_config_file_and_the_environment(tmp_path, tiny_onnx):
    if not CLIP.is_file():
        pytest.skip(f"real clips not found at {MEDIA}")
    config = tmp_path / "edgevid.toml"
    config.write_text(
        f'[run]\nsource = ["{CLIP}"]\nmodel = "{tiny_onnx}"\ntop_k = 4\nmax-frames = 16\n'
        'every = 8\ndevice = "cpu"\nquiet = true\n'
    )
    for env, args, top_k in [({}, [], 4), ({"EDGEVID_RUN_TOP_K": "2"}, [], 2),
                             ({"EDGEVID_RUN_TOP_K": "2"}, ["--top-k", "1"], 1)]:  # fmt: skip
        r = edgevid("run", "--config", str(config), *args, env=env)
        assert r.returncode == 0, r.stderr
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        assert len(lines) == 2 and {len(x["top_k"]) for x in lines} == {top_k}, env
        assert r.stderr == ""  # quiet = true came from the file


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[run]\ntop_kk = 3\n", "[run] has no option 'top_kk'"),
        ("[run\n", "not valid TOML"),
        ("top_k = 3\n", "unknown table(s) top_k"),
        ('[run]\ntop_k = "many"\n', "'many' is not a valid integer"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path, text, fragment):
    config = tmp_path / "c.toml"
    config.write_text(text)
    r = edgevid("run", "-s", "x.mp4", "-m", "m.onnx", "--config", str(config))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and fragment in r.stderr, r.stderr


def test_old_spellings_still_work_and_say_what_replaces_them(tmp_path):
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    r = edgevid("bench", str(tmp_path / "m.onnx"), "--video", str(text))
    assert r.returncode == 2
    *warned, error = r.stderr.splitlines()
    assert warned == [
        "edgevid: warning: --video is deprecated; use --source",
        "edgevid: warning: models as arguments are deprecated; use -m/--model",
    ]
    assert error.startswith("edgevid: error:") and "text.mp4" in error  # the alias reached it
    r = edgevid("-qq", "bench", str(tmp_path / "m.onnx"), "--video", str(text))
    assert r.stderr.count("\n") == 1 and "deprecated" not in r.stderr  # -qq: errors only


def test_progress_goes_to_stderr_and_quiet_hides_it(tmp_path):
    r = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "a"), "--clips-per-class", "2"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"wrote 10 clips in 5 classes to {tmp_path / 'a'}"
    assert "writing clips" in r.stderr
    r = CliRunner().invoke(main, ["-q", "data", "synth", str(tmp_path / "b"),
                                  "--clips-per-class", "2"])  # fmt: skip
    assert r.exit_code == 0 and r.stderr == ""


@pytest.mark.slow  # imports every backend (OpenVINO, torch) in a fresh process
def test_checks_reports_the_environment_as_text_and_json(tmp_path):
    import cv2
    import onnxruntime as ort

    r = edgevid("checks", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["python"]["version"] == platform.python_version()
    assert report["onnxruntime"]["providers"] == ort.get_available_providers()
    assert report["opencv"]["version"] == cv2.__version__
    assert report["opencv"]["FFMPEG"].startswith(("YES", "NO"))
    cpuinfo = Path("/proc/cpuinfo").read_text()
    for flag in ("avx2", "avx512_bf16", "amx_tile"):
        assert (flag in report["cpu"]["flags"]) == (f" {flag}" in cpuinfo)
    assert report["cpu"]["logical_cpus"] == os.cpu_count()
    assert report["packages"]["numpy"] == __import__("numpy").__version__

    r = CliRunner().invoke(main, ["checks"])
    assert r.exit_code == 0
    for section in report:  # the text shows every section the JSON has
        assert f"\n{section}\n" in f"\n{r.stdout}"
    assert f"providers                {', '.join(ort.get_available_providers())}" in r.stdout
    r = CliRunner().invoke(main, ["checks", "--json", str(tmp_path / "env.json")])
    assert r.exit_code == 0 and "providers" in r.stdout and "wrote" in r.stderr  # table too
    written = json.loads((tmp_path / "env.json").read_text())
    assert written["cpu"]["flags"] == report["cpu"]["flags"]
