"""docker/: no Docker engine runs here, so the images are linted (hadolint) and checked for
what they must do: install edgevid with the runtime and the extras the examples use, run
unprivileged, take `edgevid` commands (`docker run IMAGE run --source ...`), answer the
HEALTHCHECK, keep the engine cache in a volume. The compose file and the systemd unit are
parsed, their command lines parsed by edgevid's own CLI, and the unit checked by
`systemd-analyze verify`."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKER = ROOT / "docker"
GPU_FILES = ["Dockerfile", "Dockerfile.jetson"]  # NVIDIA bases: TensorRT, CUDA 12.6
FILES = [*GPU_FILES, "Dockerfile.cpu"]
EXAMPLE_EXTRAS = ("mqtt", "metrics")  # --publish and --metrics-port / HEALTHCHECK
CACHE = "/var/cache/edgevid"


@pytest.fixture(scope="module")
def hadolint() -> str:
    # The dev extra installs it beside the interpreter; that folder may not be on PATH.
    beside_python = str(Path(sys.executable).parent)
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=beside_python)
    if exe is None:
        pytest.skip("hadolint not installed (pip install 'edgevid[dev]')")
    return exe


@pytest.mark.parametrize("name", FILES)
def test_hadolint_clean(hadolint, name):
    r = subprocess.run(
        [hadolint, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKER / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_problems(hadolint, tmp_path):
    """The linter really runs: a sloppy Dockerfile fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install curl\n")
    r = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0 and "DL3006" in r.stdout  # untagged base image


def instruction(text: str, name: str) -> str:
    """The (last) ``name`` instruction's arguments, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = re.findall(rf"^{name} (.*)$", joined, re.M)
    assert found, f"no {name}"
    return found[-1].strip()


def extra_packages(extra: str) -> list[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0] for d in deps["optional-dependencies"][extra]]


@pytest.mark.parametrize("name", FILES)
def test_image_contract(name):
    text = (DOCKER / name).read_text()
    code = re.sub(r"#.*", "", text)
    assert re.search(r"^FROM \$\{BASE\}", text, re.M)
    assert re.search(r"^ARG BASE=\S+:\S+$", text, re.M)  # a tagged base
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)  # non-root
    assert instruction(text, "ENTRYPOINT") == '["edgevid"]'  # docker run IMAGE run --source ...
    assert instruction(text, "CMD") == '["run", "--help"]'
    assert "torch" not in code  # the runtime image carries no torch
    usage = re.findall(r"^#\s+(?:edgevid:\w+ run --source|--gpus all|--runtime nvidia).*", text,
                       re.M)  # fmt: skip
    assert usage and re.search(r"edgevid:\w+ run --source", text)  # usage, with `run`


@pytest.mark.parametrize("name", FILES)
def test_image_serves_the_examples_health_and_cache(name):
    """The extras the README/compose examples use; the HEALTHCHECK asks the run's /healthz
    on EDGEVID_RUN_METRICS_PORT (also the port EXPOSEd); the engine cache is a volume the
    unprivileged user owns, named by EDGEVID_ENGINE_CACHE."""
    text = (DOCKER / name).read_text()
    env = instruction(text, "ENV")
    port = re.search(r"EDGEVID_RUN_METRICS_PORT=(\d+)", env).group(1)
    assert instruction(text, "EXPOSE") == port
    assert f"EDGEVID_ENGINE_CACHE={CACHE}" in env
    assert instruction(text, "VOLUME") == f'["{CACHE}"]'
    assert f"install -d -o edgevid -g edgevid {CACHE}" in text
    health = instruction(text, "HEALTHCHECK")
    assert health.endswith('CMD ["edgevid", "healthcheck"]') and "--start-period=" in health
    if name in GPU_FILES:  # edgevid installed --no-deps: each extra's packages named
        for extra in EXAMPLE_EXTRAS:
            for package in extra_packages(extra):
                assert re.search(rf'"{re.escape(package)}[<>=]', text), (extra, package)
    else:
        extras = re.search(r"edgevid-\*\.whl\)\[([\w,]+)\]", text).group(1).split(",")
        assert set(extras) == {"openvino", *EXAMPLE_EXTRAS}  # the CPU fast path too


def test_healthcheck_command_answers_like_docker_expects(tmp_path):
    """`edgevid healthcheck` with nothing serving: exit 1 (unhealthy; Docker reserves 2),
    one line naming the URL."""
    from tests.test_delivery import free_port

    port = free_port()
    r = subprocess.run(
        [sys.executable, "-m", "edgevid", "healthcheck"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "EDGEVID_RUN_METRICS_PORT": str(port)},
    )  # fmt: skip
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"edgevid: error: http://127.0.0.1:{port}/healthz: no answer")
    assert len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", FILES)
def test_uid_1000_is_freed_before_edgevid_takes_it(name):
    """Ubuntu 24.04 bases have a user "ubuntu" with uid 1000: useradd --uid 1000 would fail."""
    text = (DOCKER / name).read_text()
    run = re.search(r"^RUN (.*?useradd[^\n]*)$", text, re.M | re.S)
    assert run and "--uid 1000" in run.group(1)
    before = run.group(1).split("useradd")[0]
    assert 'userdel --remove "$(id -nu 1000)"' in before and "id -u 1000" in before


def test_lint_exceptions_are_scoped_not_global():
    """No rule is switched off for every file; the one exception (DL3008, apt versions that
    the JetPack base image tag pins) sits on the RUN line it concerns."""
    assert re.search(r"^ignored: \[\]$", (DOCKER / ".hadolint.yaml").read_text(), re.M)
    jetson = (DOCKER / "Dockerfile.jetson").read_text()
    assert re.search(r"^# hadolint ignore=DL3008\nRUN apt-get update", jetson, re.M)
    for name in GPU_FILES:
        assert "cuda-python==12.6.*" in (DOCKER / name).read_text()  # the image's CUDA


def parse_run(args: list[str]) -> dict:
    """``edgevid run`` ARGS parsed by the real command (options, types, ranges), not run."""
    from edgevid.cli.run import run

    assert args[0] == "run", args
    return run.make_context("run", list(args[1:])).params


# --- docker-compose.yml ----------------------------------------------------------------------
def test_compose_example_runs_edgevid_beside_its_broker():
    import yaml

    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"edgevid", "mosquitto"}
    ev, broker = services["edgevid"], services["mosquitto"]
    assert re.fullmatch(r"eclipse-mosquitto:\d+\.\d+\.\d+", broker["image"])  # pinned tag
    build = ev["build"]
    dockerfile = (DOCKER / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile == DOCKER / "Dockerfile.cpu"
    params = parse_run(ev["command"])  # every option one `edgevid run` takes
    from edgevid.runtime.outputs import MqttTarget

    target = MqttTarget.parse(params["publish"])
    assert target.host == "mosquitto" and target.port == 1883  # the broker service, by name
    assert ev["depends_on"] == ["mosquitto"] and ev["restart"] == broker["restart"]
    image = (DOCKER / "Dockerfile.cpu").read_text()
    port = re.search(r"EDGEVID_RUN_METRICS_PORT=(\d+)", image).group(1)
    assert ev["environment"]["EDGEVID_RUN_METRICS_HOST"] == "0.0.0.0"  # reachable via the port
    assert ev["ports"] == [f"127.0.0.1:{port}:{port}"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in ev["volumes"]}
    assert mounts[CACHE] in compose["volumes"]  # a named volume for the engine cache
    assert Path(params["model"]).parent.as_posix() in mounts  # the model is mounted
    for path in (params["json_path"], params["events_path"]):
        assert Path(path).parent.as_posix() in mounts  # logs outlive the container


# --- edgevid.service -------------------------------------------------------------------------
def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: section -> key -> values (keys repeat), continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(m.group(1), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_runs_edgevid_as_a_service():
    unit = unit_sections((DOCKER / "edgevid.service").read_text())
    service = unit["Service"]
    assert set(unit) == {"Unit", "Service", "Install"}
    exec_start = shlex.split(service["ExecStart"][0])
    assert exec_start[0].endswith("/bin/edgevid")
    params = parse_run(exec_start[1:])
    env = dict(v.split("=", 1) for v in service["Environment"])
    assert env["EDGEVID_RUN_METRICS_PORT"].isdigit() and env["EDGEVID_ENGINE_CACHE"] == CACHE
    assert service["CacheDirectory"] == ["edgevid"]  # = /var/cache/edgevid, writable
    state = "/var/lib/" + service["StateDirectory"][0]
    for path in (params["json_path"], params["events_path"], params["model"]):
        assert path.startswith(state + "/")  # writable under ProtectSystem=strict
    assert service["User"] != ["root"] and service["SupplementaryGroups"] == ["video"]
    assert service["KillSignal"] == ["SIGTERM"] and service["Restart"] == ["on-failure"]
    assert float(service["TimeoutStopSec"][0]) >= 10
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verifies_the_unit(tmp_path):
    """`systemd-analyze verify` (no running systemd needed) with ExecStart pointed at this
    checkout's edgevid (it checks the program exists): no warning. A unit with a bad key
    and a bad value does warn: the check checks."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (the parse checks above still run)")
    exe = Path(sys.executable).parent / "edgevid"
    if not exe.exists():
        pytest.skip(f"{exe}: the edgevid script is not installed beside this interpreter")
    text = (DOCKER / "edgevid.service").read_text().replace("/opt/edgevid/bin/edgevid", str(exe))
    unit = tmp_path / "edgevid.service"
    unit.write_text(text)
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nBogusKey=1\nRestart=sometimes\n")
    results = [
        subprocess.run([analyze, "verify", str(p)], capture_output=True, text=True, timeout=60)
        for p in (unit, bad)
    ]
    if "Failed to" in results[0].stderr and "bus" in results[0].stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {results[0].stderr.strip()}")
    assert results[0].returncode == 0 and results[0].stderr == "", results[0].stderr
    assert "Unknown key 'BogusKey'" in results[1].stderr and "sometimes" in results[1].stderr


# --- the docs say what the files say ---------------------------------------------------------
DOCS = ROOT / "docs" / "deploy-docker.md"


def test_docs_show_the_compose_command_and_the_images_usage():
    """docs/deploy-docker.md: the compose `command:` word for word, and each image's usage
    comment (docker build / docker run) as one of its examples."""
    import yaml

    docs = DOCS.read_text()
    command = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())["services"]["edgevid"][
        "command"
    ]
    blocks = re.findall(r"```text\n(.*?)```", docs, re.S)
    assert any(b.split() == command for b in blocks), "the compose command is not in the docs"
    flat_docs = " ".join(docs.replace("\\\n", " ").split())
    for name in ("Dockerfile", "Dockerfile.cpu"):
        examples = usage_examples((DOCKER / name).read_text())
        assert len(examples) == 2, name  # docker build, docker run
        for example in examples:
            assert example in flat_docs, (name, example)


def usage_examples(text: str) -> list[str]:
    """The ``#   docker ...`` commands of a Dockerfile's header, continuation lines joined."""
    examples, current = [], None
    for line in text.splitlines():
        body = line[1:].strip() if line.startswith("#") else None
        if body is not None and (body.startswith("docker ") or current is not None):
            current = f"{current} {body}" if current else body
            if not current.endswith("\\"):
                examples.append(" ".join(current.split()))
                current = None
            else:
                current = current[:-1]
    return examples
