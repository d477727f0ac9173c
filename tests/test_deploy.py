"""The container image (Dockerfile) and the stack (compose.yaml), checked without Docker.

Docker is not available where the tests run, so nothing here builds an image or starts a
container.  What can be checked statically is: the image gets every package the console
scripts import (and their package data), it exposes the ports the settings default to,
runs as an unprivileged user, keeps its data in a volume, and its HEALTHCHECK command
(plain Python, run here against a real HTTP server) says healthy / unhealthy when it should;
the compose file parses, every service of our image runs a command that exists (parsed by
that command's own argument parser), every SYNESTHETE_* variable is a real setting with a
valid value, the bot reaches the engine and the engine reaches Milvus by service name, and
every `depends_on` condition can be met.
"""

from __future__ import annotations

import ast
import fnmatch
import http.server
import importlib
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from engine.settings import Settings, env_key

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
#: the project's own top-level packages (tests and benchmarks never go into the image)
FIRST_PARTY = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} - {"tests", "bench"}


# ---- the Dockerfile ---------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def _module_file(module: str) -> Path | None:
    base = ROOT / module.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def imported_packages(module: str) -> set[str]:
    """Top-level first-party packages ``module`` imports, transitively, lazy imports included."""
    seen: set[str] = set()
    stack = [module]
    while stack:
        mod = stack.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _module_file(mod)
        if path is None:
            continue
        parts = mod.split(".")
        stack.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run too
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                targets = [target, *(f"{target}.{a.name}" for a in node.names)]
            else:
                continue
            stack.extend(t for t in targets if t.split(".")[0] in FIRST_PARTY)
    return {m.split(".")[0] for m in seen if _module_file(m) is not None}


def copied_sources() -> set[str]:
    out: set[str] = set()
    for args in instructions("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        out.update(w.rstrip("/") for w in words[:-1])
    return out


def test_the_import_walk_sees_lazy_imports() -> None:
    # synesthete-bot --with-web imports the web app inside a function: the walk must see it,
    # or the next check could pass with web/ missing from the image
    assert "web" in imported_packages("bot.main")
    assert imported_packages("engine.settings") == {"engine"}


def test_the_image_gets_every_package_the_console_scripts_import() -> None:
    needed = set().union(*(imported_packages(target.split(":")[0]) for target in SCRIPTS.values()))
    assert {"engine", "index_builder", "bot", "web"} <= needed
    copied = copied_sources()
    missing = sorted(p for p in needed if p not in copied and "." not in copied)
    assert not missing, f"the Dockerfile does not COPY {missing}, which the console scripts import"
    # `pip install .` installs them only if setuptools finds them
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert all(any(fnmatch.fnmatch(p, pat) for pat in include) for p in needed), include
    assert "pyproject.toml" in copied and "README.md" in copied  # pip install . needs both


def test_every_data_file_of_the_packages_is_installed() -> None:
    """A non-Python file (web/static/*) exists in the installed package only through package-data."""
    package_data: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"].get("package-data", {})
    uncovered = []
    for pkg in sorted(FIRST_PARTY):
        for f in (ROOT / pkg).rglob("*"):
            if not f.is_file() or f.suffix in (".py", ".pyc") or "__pycache__" in f.parts:
                continue
            rel = f.relative_to(ROOT / pkg).as_posix()
            if not any(fnmatch.fnmatch(rel, pat) and rel.count("/") == pat.count("/")
                       for pat in package_data.get(pkg, [])):
                uncovered.append(f"{pkg}/{rel}")
    assert not uncovered, f"not in [tool.setuptools.package-data], so missing from the image: {uncovered}"
    assert (ROOT / "web" / "static" / "index.html").is_file()


def test_the_image_exposes_the_default_ports_runs_unprivileged_and_keeps_data_in_a_volume() -> None:
    defaults = Settings()
    exposed = {w.split("/")[0] for args in instructions("EXPOSE") for w in args.split()}
    assert {str(defaults.web_port), str(defaults.bot_metrics_port)} <= exposed
    words = [w for w, _ in dockerfile()]
    users = instructions("USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert words.index("CMD") > len(words) - 1 - words[::-1].index("USER"), "CMD must run after USER"
    assert any("/data" in v for v in instructions("VOLUME"))
    env = " ".join(instructions("ENV"))
    for name, value in (("data_dir", "/data"), ("web_host", "0.0.0.0"), ("bot_metrics_host", "0.0.0.0")):
        assert f"{env_key(name)}={value}" in env, name
    assert any("chown" in r and "/data" in r for r in instructions("RUN")), "/data must belong to the user"


def test_the_image_installs_the_demo_packages_the_demo_needs() -> None:
    from index_builder.demo import DEMO_PACKAGES

    run = " ".join(instructions("RUN"))
    missing = [p.package for p in DEMO_PACKAGES if not re.search(rf"(?<![\w.-]){re.escape(p.package)}(?![\w.-])", run)]
    assert not missing, f"not installed in the image, and the unprivileged user cannot apt-get them: {missing}"


def test_the_image_can_share_rate_limits_through_redis_with_the_projects_limits_version() -> None:
    pin = next(d for d in PYPROJECT["project"]["dependencies"] if re.match(r"limits\b", d))
    version = pin.split("==")[1]
    assert f'"limits[async-redis]=={version}"' in " ".join(instructions("RUN")), \
        f"the image must install limits[async-redis] at the project's pin ({pin})"


def shell_commands(script: str) -> list[list[str]]:
    """The ``synesthete*`` commands a ``sh -c`` script runs."""
    out = []
    for part in re.split(r"&&|\|\||;|\bthen\b|\belse\b", script):
        words = shlex.split(part)
        while words and words[0] in ("exec", "if", "fi"):
            words = words[1:]
        if words and words[0].startswith("synesthete"):
            out.append(words)
    return out


def check_command(argv: list[str]) -> None:
    """``argv`` names a console script and its own parser accepts the arguments."""
    assert argv[0] in SCRIPTS, f"{argv[0]} is not a console script of pyproject.toml"
    module = importlib.import_module(SCRIPTS[argv[0]].split(":")[0])
    parser = module.build_parser()
    parser = parser[0] if isinstance(parser, tuple) else parser
    try:
        parser.parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"{shlex.join(argv)}: rejected by its parser (exit {exc.code})")


def test_the_default_command_runs_existing_commands() -> None:
    (cmd,) = instructions("CMD")
    argv = json.loads(cmd)
    assert argv[:2] == ["sh", "-c"]
    commands = shell_commands(argv[2])
    assert [c[0] for c in commands] == ["synesthete-index", "synesthete-bot", "synesthete-web"]
    for c in commands:
        check_command(c)


# ---- the HEALTHCHECK, run for real ----------------------------------------------------------------


def healthcheck_argv() -> list[str]:
    (hc,) = instructions("HEALTHCHECK")
    argv = json.loads(hc[hc.index("CMD") + 3:].strip())
    assert argv[:2] == ["python", "-c"], "exec form with the image's python (no curl in the slim image)"
    return argv


class Health:
    """A real HTTP server on 127.0.0.1 whose /healthz answers ``status``."""

    def __init__(self, status: int) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                code = outer.status if self.path == "/healthz" else 404
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": %s}' % (b"true" if code == 200 else b"false"))

            def log_message(self, *args) -> None:
                pass

        self.status = status
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_healthcheck(web_port: int, bot_port: int) -> subprocess.CompletedProcess:
    argv = healthcheck_argv()
    env = {"SYNESTHETE_WEB_PORT": str(web_port), "SYNESTHETE_BOT_METRICS_PORT": str(bot_port), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("web,bot,healthy", [
    (200, None, True),    # the engine container: only the web app listens
    (None, 200, True),    # the bot container: only the bot's metrics port listens
    (200, 200, True),     # synesthete-bot --with-web
    (503, None, False),   # the web app without an index
    (None, 503, False),   # the bot not connected to Discord
    (200, 503, False),    # one front end of two is down
    (None, None, False),  # nothing listens (still building, or crashed)
])
def test_the_healthcheck_says_healthy_only_when_every_listening_front_end_is(web, bot, healthy) -> None:
    servers = {name: Health(code) for name, code in (("web", web), ("bot", bot)) if code is not None}
    try:
        ports = {name: servers[name].port if name in servers else free_port() for name in ("web", "bot")}
        done = run_healthcheck(ports["web"], ports["bot"])
    finally:
        for s in servers.values():
            s.close()
    assert (done.returncode == 0) == healthy, (done.returncode, done.stderr)
    if not healthy:
        assert done.stderr.strip(), "an unhealthy check says why (docker inspect shows it)"


# ---- compose.yaml -----------------------------------------------------------------------------------

COMPOSE = ROOT / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def ours(doc: dict) -> dict[str, dict]:
    """The services built from this repository's Dockerfile."""
    return {name: s for name, s in doc["services"].items() if s.get("build") in (".", "./")}


def substituted(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} with the default, or a stand-in value."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*)|:?\?[^}]*)?\}", lambda m: m.group(2) or f"stand-in-{m.group(1).lower()}",
                  value)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: substituted(str(v)) for k, v in env.items()}


def test_compose_runs_engine_bot_and_milvus_with_etcd_and_minio() -> None:
    doc = compose()
    services = doc["services"]
    assert {"engine", "bot", "milvus", "etcd", "minio"} <= set(services)
    assert re.fullmatch(r"milvusdb/milvus:v2\.3\.\d+", services["milvus"]["image"])
    # the same Milvus as the development file, so the two never drift apart
    dev = yaml.safe_load((ROOT / "docs" / "docker-compose.milvus.yml").read_text())["services"]
    for name in ("etcd", "minio", "milvus"):
        assert services[name]["image"] == dev[name]["image"], name
    assert set(ours(doc)) >= {"engine", "bot"}


def test_compose_services_run_existing_commands() -> None:
    doc = compose()
    commands = {name: s["command"] for name, s in ours(doc).items()}
    for argv in commands.values():
        assert isinstance(argv, list), "exec form: no shell between docker and the process"
        check_command(argv)
    assert commands["engine"][:3] == ["synesthete-web", "--host", "0.0.0.0"]
    assert commands["bot"][0] == "synesthete-bot" and "--with-web" not in commands["bot"]


def test_compose_settings_are_real_settings_with_valid_values() -> None:
    fields = {env_key(f) for f in Settings.__dataclass_fields__}
    for name, service in ours(compose()).items():
        env = environment(service)
        unknown = sorted(k for k in env if k.startswith("SYNESTHETE_") and k not in fields)
        assert not unknown, f"{name}: not settings (typo?): {unknown}"
        assert "DISCORD_TOKEN" not in env, "the token comes from .env, never from the compose file"
        settings = Settings.from_env(env, env_file=None)  # raises on a bad value, with its sentence
        assert str(settings.data_dir) == "/data"
        mounts = {v.split(":")[1] for v in service.get("volumes", [])}
        assert "/data" in mounts, f"{name}: /data is not a volume"


def test_compose_wires_bot_to_engine_and_engine_to_milvus_by_service_name() -> None:
    doc = compose()
    services = doc["services"]
    engine_env = environment(services["engine"])
    bot_env = environment(services["bot"])
    milvus = urlparse(engine_env["SYNESTHETE_MILVUS_URI"])
    assert (milvus.hostname, milvus.port) == ("milvus", 19530)
    assert environment(services["index"])["SYNESTHETE_MILVUS_URI"] == engine_env["SYNESTHETE_MILVUS_URI"]
    engine = urlparse(bot_env["SYNESTHETE_ENGINE_URL"])
    assert engine.hostname == "engine"
    assert engine.port == Settings.from_env(engine_env, env_file=None).web_port
    assert "SYNESTHETE_MILVUS_URI" not in bot_env, "the bot asks the engine; it opens no index"
    for owner in ("engine", "index"):  # they open the index themselves, whatever .env says
        assert environment(services[owner]).get("SYNESTHETE_ENGINE_URL") == "", owner
    # the bot's requests are trusted by the engine with the same token, which has no default
    assert services["engine"]["environment"]["SYNESTHETE_ENGINE_TOKEN"] == \
        services["bot"]["environment"]["SYNESTHETE_ENGINE_TOKEN"]
    assert ":?" in services["bot"]["environment"]["SYNESTHETE_ENGINE_TOKEN"]
    # the engine and the index builder share the data volume (catalogue, fingerprints)
    assert "engine-data:/data" in services["engine"]["volumes"] and "engine-data:/data" in services["index"]["volumes"]


def test_compose_depends_on_conditions_can_be_met() -> None:
    doc = compose()
    services = doc["services"]
    image_has_healthcheck = bool(instructions("HEALTHCHECK"))
    expected = {
        ("milvus", "etcd"): "service_healthy", ("milvus", "minio"): "service_healthy",
        ("index", "milvus"): "service_healthy",
        ("engine", "milvus"): "service_healthy", ("engine", "index"): "service_completed_successfully",
        ("bot", "engine"): "service_healthy",
    }
    for (svc, dep), condition in expected.items():
        assert services[svc]["depends_on"][dep]["condition"] == condition, (svc, dep)
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on a service that does not exist: {dep}"
            if spec["condition"] == "service_healthy":
                hc = services[dep].get("healthcheck") or {}
                assert not hc.get("disable"), f"{dep} has its healthcheck disabled"
                # a test of its own, or the image's HEALTHCHECK (our image)
                assert hc.get("test") or (dep in ours(doc) and image_has_healthcheck), dep
            if spec["condition"] == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must run once and exit"
