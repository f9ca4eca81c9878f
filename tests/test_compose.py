"""compose.yaml, the Dockerfile and .dockerignore: the stack is wired as the service and its docs expect."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.core.settings import ENV_NAMES, from_env
from service.storage.migrations import DB_DIR
from tests.conftest import REDIS_IMAGE, TIMESCALEDB_IMAGE

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
ONE_SHOT = {"migrate", "demo"}
# Variables app services may set that are not settings of service/core/settings.py, and why. None so far.
ENV_EXCEPTIONS: dict[str, str] = {}
SETTINGS = set(ENV_NAMES.values())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def interpolate(value: str, environ: dict[str, str] | None = None) -> str:
    """Compose's `${VAR:-default}` / `${VAR}` / `$$` substitution, with the given (default: empty) environment."""
    env = environ or {}

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(3)
        return env.get(name) or (default if default is not None else "")

    return re.sub(r"\$\$|\$\{(\w+)(:-([^}]*))?\}", one, value)


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the analytics image."""
    return {name: s for name, s in services.items() if "build" in s}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: interpolate(str(v)) for k, v in env.items()}


def test_services_of_the_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "timescaledb",
        "redis",
        "migrate",
        "api",
        "ingest",
        "worker",
        "prometheus",
        "grafana",
        "demo",
    }
    assert services["demo"]["profiles"] == ["demo"]
    assert all("profiles" not in s for name, s in services.items() if name != "demo")
    assert set(app_services(services)) == {"migrate", "api", "ingest", "worker", "demo"}


def test_every_service_has_an_image_and_a_healthcheck_or_is_one_shot(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if name in ONE_SHOT:
            assert service.get("restart") in ("no", "on-failure"), f"{name} runs once: restart must be no/on-failure"
            assert "healthcheck" not in service, name
        else:
            test = service["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL"), name
            assert service.get("restart") == "unless-stopped", name


def test_commands(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["command"] == ["migrate"]
    assert services["api"]["command"] == ["serve"]
    assert services["ingest"]["command"] == ["ingest"]
    assert services["worker"]["command"] == ["worker"]
    assert services["demo"]["entrypoint"] == ["analytics", "demo"]
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--appendfsync everysec" in redis_command


def test_images_are_pinned_to_versions(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
    # The stack runs on the same servers as the Docker-backed test run.
    assert services["timescaledb"]["image"] == TIMESCALEDB_IMAGE
    assert services["redis"]["image"] == REDIS_IMAGE
    assert {s["image"] for s in app_services(services).values()} == {"community-analytics:0.1.0"}
    assert {s["build"] for s in app_services(services).values()} == {"."}


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in ("service_started", "service_healthy", "service_completed_successfully")
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s missing healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert dependency in ONE_SHOT
    needs = {name: s.get("depends_on") or {} for name, s in services.items()}
    for name, service in services.items():
        env = environment(service)
        if name != "timescaledb" and ("DATABASE_URL" in env or "POSTGRES_PASSWORD" in env):
            assert needs[name].get("timescaledb") == {"condition": "service_healthy"}, name
        if "REDIS_URL" in env and name != "migrate":
            assert needs[name].get("redis") == {"condition": "service_healthy"}, name
    for name in ("api", "ingest", "worker"):
        assert needs[name]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert needs["demo"] == {
        "api": {"condition": "service_healthy"},
        "ingest": {"condition": "service_started"},
        "worker": {"condition": "service_started"},
    }
    assert needs["grafana"]["prometheus"] == {"condition": "service_healthy"}


def test_volumes_are_declared_and_host_paths_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).is_dir(), f"{name} mounts {source}, which is not a directory of the repository"
            else:
                assert source in declared, f"{name} uses the undeclared volume {source}"
                used.add(source)
    assert used == declared
    mounts = {name: s.get("volumes") or [] for name, s in compose["services"].items()}
    assert "timescaledb-data:/var/lib/postgresql/data" in mounts["timescaledb"]
    assert "redis-data:/data" in mounts["redis"]
    assert "./prometheus:/etc/prometheus:ro" in mounts["prometheus"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts["grafana"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts["grafana"]


def test_app_environment_is_made_of_known_settings(services: dict[str, dict[str, Any]]) -> None:
    for name, service in app_services(services).items():
        env = environment(service)
        unknown = set(env) - SETTINGS - set(ENV_EXCEPTIONS)
        assert not unknown, f"{name} sets {sorted(unknown)}, which service/core/settings.py does not read"
        # What compose hands the process (defaults filled in) is a valid configuration.
        settings = from_env(env, dotenv=None)
        if name != "demo":
            assert settings.database_url == "postgresql://analytics:analytics@timescaledb:5432/analytics"
            assert settings.redis_url == "redis://redis:6379/0"
        assert settings.jwt_secret is not None and "insecure" in settings.jwt_secret  # visibly a development default
    raw = services["api"]["environment"]["JWT_SECRET"]
    assert raw.startswith("${JWT_SECRET:-"), "JWT_SECRET must be overridable from the environment"
    db = environment(services["timescaledb"])
    assert (db["POSTGRES_DB"], db["POSTGRES_USER"]) == ("analytics", "analytics")
    secret = {"POSTGRES_PASSWORD": "s3cret"}
    assert interpolate(services["timescaledb"]["environment"]["POSTGRES_PASSWORD"], secret) == "s3cret"
    assert interpolate(services["api"]["environment"]["DATABASE_URL"], secret).startswith(
        "postgresql://analytics:s3cret@"
    )
    assert interpolate(services["grafana"]["environment"]["POSTGRES_PASSWORD"], secret) == "s3cret"


def test_ports_and_probes_match_the_settings(services: dict[str, dict[str, Any]]) -> None:
    api, ingest, worker = (environment(services[n]) for n in ("api", "ingest", "worker"))
    assert api["ANALYTICS_HOST"] == "0.0.0.0" and api["ANALYTICS_WORKERS"] == "2"
    # The workers' /metrics servers listen on ANALYTICS_HOST too: Prometheus reaches them from its container.
    assert ingest["ANALYTICS_HOST"] == worker["ANALYTICS_HOST"] == "0.0.0.0"
    probes = {name: " ".join(services[name]["healthcheck"]["test"]) for name in services if name not in ONE_SHOT}
    assert f"127.0.0.1:{api['ANALYTICS_PORT']}/ready" in probes["api"]
    assert f"127.0.0.1:{ingest['INGEST_METRICS_PORT']}/metrics" in probes["ingest"]
    assert f"127.0.0.1:{worker['WORKER_METRICS_PORT']}/metrics" in probes["worker"]
    assert "pg_isready -h 127.0.0.1 -U $$POSTGRES_USER -d $$POSTGRES_DB" in probes["timescaledb"]
    assert "redis-cli ping" in probes["redis"]
    assert "/-/ready" in probes["prometheus"] and "/api/health" in probes["grafana"]
    assert "curl" not in probes["api"]  # the slim image has none
    published = {name: s.get("ports") for name, s in services.items() if s.get("ports")}
    assert published == {
        "api": ["127.0.0.1:8000:8000"],
        "prometheus": ["127.0.0.1:9090:9090"],
        "grafana": ["127.0.0.1:3000:3000"],
    }
    demo = environment(services["demo"])
    assert (demo["ANALYTICS_HOST"], demo["ANALYTICS_PORT"]) == ("api", api["ANALYTICS_PORT"])


def test_prometheus_scrapes_the_services_where_they_listen(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    api, ingest, worker = (environment(services[n]) for n in ("api", "ingest", "worker"))
    assert targets["analytics-api"] == [f"api:{api['ANALYTICS_PORT']}"]
    assert targets["analytics-ingest"] == [f"ingest:{ingest['INGEST_METRICS_PORT']}"]
    assert targets["analytics-worker"] == [f"worker:{worker['WORKER_METRICS_PORT']}"]


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases and all(re.fullmatch(r"python:3\.12\.\d+-slim-\w+", b) for b in bases), bases
    instructions = re.findall(r"^([A-Z]+)\s+(.*)$", text, flags=re.MULTILINE)
    last = {name: value for name, value in instructions}  # the final stage's (last) value of each
    assert last["ENTRYPOINT"] == '["analytics"]'
    assert last["USER"].split(":")[0] not in ("root", "0")
    assert "pip install ." in text
    # The SQL is inside the package: the build copies nothing else and checks the installed package finds it.
    assert "COPY db/" not in text and "from service.storage.migrations import DB_DIR" in text


def test_the_sql_ships_inside_the_package(tmp_path: Path) -> None:
    """A plain `pip install .` (here: the wheel it installs) carries every migration and rollup file."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)]
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("service/db/")}
    expected = {f"service/{p.relative_to(DB_DIR.parent)}" for p in DB_DIR.rglob("*") if p.suffix in (".sql", ".md")}
    assert expected and expected == shipped
    assert "service/db/migrations/0001_core.sql" in shipped


def test_dockerignore_keeps_local_state_out_but_not_what_the_build_copies() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    ignored.discard("")
    for entry in (".git", ".venv", ".analytics", "**/node_modules", "**/__pycache__", ".mypy_cache", ".pytest_cache"):
        assert entry in ignored, entry
    copied = re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    for sources in copied:
        for source in sources.split():
            assert source.rstrip("/") not in ignored, f"the Dockerfile copies {source}, which .dockerignore drops"


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config` (no engine needed), when a Compose client is installed."""
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose / docker-compose client on this machine")
    path = COMPOSE
    if command[0].endswith("docker-compose"):
        # Compose v1 predates the top-level `name`; everything else it validates as v2 does.
        path = tmp_path / "compose.yaml"
        path.write_text(re.sub(r"^name: .*\n", "", COMPOSE.read_text(), flags=re.MULTILINE))
    for profile in ([], ["--profile", "demo"]):
        result = subprocess.run(
            [*command, "-f", str(path), "--project-directory", str(ROOT), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},  # no JWT_SECRET etc. from this shell
        )
        assert result.returncode == 0, result.stderr
