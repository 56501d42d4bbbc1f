"""The container files, checked without a Docker engine.

docker/compose.yml is parsed with PyYAML and its environment resolved the way Compose
interpolates `${VAR:?error}` / `${VAR:-default}`; docker/Dockerfile is read instruction
by instruction. What a build would catch late (a COPY of a missing file, an entry point
that is not our console script, a health check that needs curl) is caught here.
"""

from __future__ import annotations

import ast
import fnmatch
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from sms_gateway.config import SECRET_KEYS, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Values a deployment would export; they stand in for the real secrets.
DEPLOY_ENV = {"POSTGRES_PASSWORD": "pgsecret", "SMS_GATEWAY__OPS__TOKEN": "opssecret"}
_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


# -- helpers -------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def service(name: str) -> dict:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two YAML forms it uses."""
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


class MissingVariable(LookupError):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """`value` with ${VAR}, ${VAR:-default} and ${VAR:?error} resolved as Compose does."""

    def resolve(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        found = env.get(name, "")
        if found:
            return found
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _INTERPOLATION.sub(resolve, value)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def arguments(name: str) -> list[str]:
    return [args for keyword, args in instructions() if keyword == name]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT/CMD (shell form is refused)."""
    assert args.startswith("["), f"expected exec form, got {args!r}"
    return json.loads(args)


def runtime_instructions() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the shipped image is made of."""
    found = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(found) if keyword == "FROM")
    return found[last_from:]


def copy_sources() -> Iterator[str]:
    """Every COPY/ADD source taken from the build context (not from another stage)."""
    for keyword, args in instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(args)
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        yield from paths[:-1]


def ignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` out of the build context."""
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.replace("**/", ""))
            for prefix in prefixes
        ):
            excluded = not negate
    return excluded


# -- compose -------------------------------------------------------------------------


def test_compose_runs_the_gateway_beside_postgresql_15():
    """Two services: the gateway built here and the official PostgreSQL 15 image."""
    services = compose()["services"]
    assert {"gateway", "postgres"} == set(services)
    assert "postgres" == services["postgres"]["image"].split(":")[0]
    assert services["postgres"]["image"].split(":")[1].startswith("15")


def test_gateway_is_built_from_the_repository_root_with_our_dockerfile():
    """The build context resolves to the repo root and the dockerfile path exists in it."""
    build = service("gateway")["build"]
    context = (DOCKER / build["context"]).resolve()
    assert ROOT == context
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_postgres_is_healthchecked_and_the_gateway_waits_for_it():
    """pg_isready for the gateway's own user and database; depends_on service_healthy."""
    check = service("postgres")["healthcheck"]
    test = " ".join(check["test"]) if isinstance(check["test"], list) else check["test"]
    env = environment("postgres")
    assert "pg_isready" in test
    assert f"-U {env['POSTGRES_USER']}" in test
    assert f"-d {env['POSTGRES_DB']}" in test
    assert {"postgres": {"condition": "service_healthy"}} == service("gateway")["depends_on"]


def test_the_database_lives_in_a_named_volume():
    """PostgreSQL's data directory is a volume declared at the top level, not a bind mount."""
    mounts = service("postgres")["volumes"]
    assert 1 == len(mounts)
    volume, target = mounts[0].split(":")[:2]
    assert "/var/lib/postgresql/data" == target
    assert volume in compose()["volumes"]


def test_no_secret_is_written_into_the_compose_file():
    """Every password/token value is an interpolation; the required ones fail when unset."""
    required = {"POSTGRES_PASSWORD", "SMS_GATEWAY__OPS__TOKEN"}
    secrets_seen = set()
    for name in ("gateway", "postgres"):
        for key, value in environment(name).items():
            is_secret = key.split("__")[-1].lower() in SECRET_KEYS or key.endswith("PASSWORD")
            if is_secret:
                secrets_seen.add(key)
                assert _INTERPOLATION.fullmatch(value), f"{key} = {value!r} is a literal"
                if key in required:
                    assert ":?" in value, f"{key} must fail when unset"
            # A URL may carry a password only as an interpolation.
            for password in re.findall(r"://[^:/@]+:([^@]*)@", value):
                assert _INTERPOLATION.fullmatch(password), f"{key} has a literal password"
    expected = {
        "POSTGRES_PASSWORD",
        "SMS_GATEWAY__OPS__TOKEN",
        "SMS_GATEWAY__SMPP__PASSWORD",
        "SMS_GATEWAY__TWILIO__AUTH_TOKEN",
        "SMS_GATEWAY__TWILIO__PREVIOUS_AUTH_TOKEN",
    }
    assert expected == secrets_seen


def test_compose_refuses_to_start_without_the_required_secrets():
    """With POSTGRES_PASSWORD unset, interpolating the gateway's environment fails."""
    env = environment("gateway")
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(env["SMS_GATEWAY__DATABASE__URL"], {})
    with pytest.raises(MissingVariable, match="SMS_GATEWAY__OPS__TOKEN"):
        interpolate(env["SMS_GATEWAY__OPS__TOKEN"], {})


def test_gateway_environment_is_a_valid_postgresql_config_that_migrates_on_start():
    """The shipped TOML plus the compose environment loads (nothing unknown, all valid):
    PostgreSQL at the postgres service with its user and database, upgrade_on_start on
    (serve migrates under the advisory lock), HTTP on all interfaces, the ops token set."""
    env = {key: interpolate(value, DEPLOY_ENV) for key, value in environment("gateway").items()}
    config_in_image = env["SMS_GATEWAY_CONFIG"]
    assert "/app/config/gateway.toml" == config_in_image
    env["SMS_GATEWAY_CONFIG"] = str(ROOT / "config" / "gateway.toml")

    settings = load_settings(environ=env)

    pg = environment("postgres")
    expected_url = (
        f"postgresql+asyncpg://{pg['POSTGRES_USER']}:pgsecret@postgres:5432/{pg['POSTGRES_DB']}"
    )
    assert expected_url == settings.database.url
    assert settings.database.upgrade_on_start is True
    assert "0.0.0.0" == settings.http.host
    assert "opssecret" == settings.ops.token


def test_gateway_mounts_the_config_the_image_reads_and_publishes_its_http_port():
    """The mounted config file exists in the repo and lands where SMS_GATEWAY_CONFIG points;
    the published container port is the configured HTTP port, on loopback only."""
    gateway = service("gateway")
    source, target, mode = gateway["volumes"][0].split(":")
    assert (DOCKER / source).resolve() == ROOT / "config" / "gateway.toml"
    assert environment("gateway")["SMS_GATEWAY_CONFIG"] == target
    assert "ro" == mode
    port = tomllib.loads((ROOT / "config" / "gateway.toml").read_text(encoding="utf-8"))
    assert [f"127.0.0.1:8080:{port['http']['port']}"] == gateway["ports"]


def test_stop_grace_period_outlasts_the_shutdown_deadline():
    """Docker must not kill serve before it has flushed replies and unbound."""
    # Read from the source: importing the runner would import the whole gateway.
    runner = ast.parse((ROOT / "sms_gateway" / "runner.py").read_text(encoding="utf-8"))
    (deadline,) = [
        node.value.value
        for node in runner.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["SHUTDOWN_DEADLINE_S"]
        and isinstance(node.value, ast.Constant)
    ]
    grace = service("gateway")["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace)
    assert int(grace[:-1]) > deadline


# -- Dockerfile ------------------------------------------------------------------------


def test_every_copy_source_exists_and_is_in_the_build_context():
    """COPY/ADD sources are repo paths (context = root) that .dockerignore does not drop."""
    sources = list(copy_sources())
    assert sources, "the Dockerfile copies nothing from the repository"
    missing = [s for s in sources if not (ROOT / s).exists()]
    dropped = [s for s in sources if ignored(s)]
    assert ([], []) == (missing, dropped)


def test_the_files_pip_install_needs_are_copied():
    """pyproject.toml, its readme and every package it lists reach the build stage."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    needed = {"pyproject.toml", pyproject["project"]["readme"], *packages}
    copied = {s.rstrip("/") for s in copy_sources()}
    assert set() == needed - copied


def test_image_is_slim_python_3_11_and_runs_as_a_non_root_user():
    """Every stage starts from python:3.11-slim; the shipped stage ends as a named user."""
    defaults = dict(arg.split("=", 1) for arg in arguments("ARG") if "=" in arg)
    images = [interpolate(args.split()[0], defaults) for args in arguments("FROM")]
    assert 2 == len(images)
    assert all(image.startswith("python:3.11-slim") for image in images), images
    users = [args for keyword, args in runtime_instructions() if keyword == "USER"]
    assert users, "the runtime stage never switches user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_entry_point_is_the_console_script_and_the_command_is_serve():
    """ENTRYPOINT names pyproject's console script; CMD is a real subcommand: serve."""
    from sms_gateway.cli import app

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = pyproject["project"]["scripts"]
    assert "sms_gateway.cli:main" == scripts["sms-gateway"]
    assert ["sms-gateway"] == exec_form(arguments("ENTRYPOINT")[-1])
    assert ["serve"] == exec_form(arguments("CMD")[-1])
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert "serve" in commands


def test_environment_points_at_the_config_and_listens_on_all_interfaces():
    """SMS_GATEWAY_CONFIG is the copied config file; HTTP binds 0.0.0.0 via the env override."""
    env: dict[str, str] = {}
    for _, args in (item for item in runtime_instructions() if item[0] == "ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    assert "/app/config/gateway.toml" == env["SMS_GATEWAY_CONFIG"]
    assert "0.0.0.0" == env["SMS_GATEWAY__HTTP__HOST"]
    copies = [shlex.split(args) for keyword, args in runtime_instructions() if keyword == "COPY"]
    config_copy = next(words for words in copies if "config/gateway.toml" in words)
    assert "/app/config/" == config_copy[-1]


def _healthcheck_command() -> list[str]:
    (args,) = arguments("HEALTHCHECK")
    _options, _, command = args.partition(" CMD ")
    return exec_form(command.strip())


def test_healthcheck_uses_only_the_python_standard_library():
    """No curl or wget in slim: the check is `python -c` with urllib on 127.0.0.1 /health."""
    command = _healthcheck_command()
    assert ["python", "-c"] == command[:2]
    script = command[2]
    assert "urllib.request" in script
    assert "http://127.0.0.1:" in script and "/health" in script
    assert not {"curl", "wget"} & set(" ".join(command).split())


@pytest.fixture
def health_server() -> Iterator[dict]:
    """A stand-in /health on a free port; `state["status"]` is what it answers."""
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = state["status"] if self.path == "/health" else 404
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["port"] = server.server_address[1]
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_passes_on_200_and_fails_on_503(health_server):
    """The HEALTHCHECK command itself, run here: exit 0 while /health is 200, else not."""
    command = [sys.executable, *_healthcheck_command()[1:]]
    env = {**os.environ, "SMS_GATEWAY__HTTP__PORT": str(health_server["port"])}
    healthy = subprocess.run(command, env=env, capture_output=True, timeout=20)
    health_server["status"] = 503
    unhealthy = subprocess.run(command, env=env, capture_output=True, timeout=20)
    assert (0, True) == (healthy.returncode, unhealthy.returncode != 0)


def test_healthcheck_port_defaults_to_the_configured_http_port():
    """Without an override the check probes the port config/gateway.toml serves on."""
    config = tomllib.loads((ROOT / "config" / "gateway.toml").read_text(encoding="utf-8"))
    assert f"'{config['http']['port']}'" in _healthcheck_command()[2]
    assert [str(config["http"]["port"])] == arguments("EXPOSE")


def test_build_context_leaves_out_local_state():
    """The virtualenv, git history, SQLite files and test fixtures never reach the daemon."""
    left_out = [".git", ".venv", "var/gateway.db", "tests/smsc/node_modules", ".env"]
    kept = ["sms_gateway/cli.py", "grammar/sms.lark", "adapters/db/migrations/env.py"]
    assert ([True] * len(left_out), [False] * len(kept)) == (
        [ignored(p) for p in left_out],
        [ignored(p) for p in kept],
    )
