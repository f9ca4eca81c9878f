"""compose.yaml, the Dockerfile and .dockerignore: the stack is wired as the service and its docs expect."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.core.settings import CLUSTER_SHARDS, ENV_NAMES, from_env
from service.storage.migrations import DB_DIR
from tests.conftest import REDIS_IMAGE, TIMESCALEDB_IMAGE

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
SCALE_ENV = ROOT / "scale.env"
REDIS_NODES = ("redis-node-1", "redis-node-2", "redis-node-3")
# The `scale` profile: a Redis Cluster and a streaming replica of timescaledb, configured by scale.env.
SCALE = {*REDIS_NODES, "redis-cluster", "timescaledb-replica"}
ONE_SHOT = {"migrate", "demo", "redis-cluster"}
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


def environment(service: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as compose hands it over, interpolated with `environ` (default: empty)."""
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping"
    return {k: interpolate(str(v), environ) for k, v in env.items()}


def read_env_file(path: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """An env file of KEY=VALUE lines and comments; Compose v2 interpolates each value with `environ` (the shell's)
    and the lines before it."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path.name}: not a KEY=VALUE line: {line!r}"
        assert not value.startswith(("'", '"')), f"{path.name}: {key} is quoted; keep values plain"
        values[key] = interpolate(value, {**(environ or {}), **values})
    return values


def scripts(service: dict[str, Any]) -> list[str]:
    """The strings compose passes to a container's shell or process: command, entrypoint, healthcheck test."""
    found: list[str] = []
    for value in (service.get("command"), service.get("entrypoint"), (service.get("healthcheck") or {}).get("test")):
        if value is not None:
            found.extend([value] if isinstance(value, str) else map(str, value))
    return found


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
        *SCALE,
    }
    assert services["demo"]["profiles"] == ["demo"]
    for name in SCALE:
        assert services[name].get("profiles") == ["scale"], name
    assert all("profiles" not in s for name, s in services.items() if name not in {"demo", *SCALE})
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


def test_scale_profile_commands(services: dict[str, dict[str, Any]]) -> None:
    """The Redis Cluster and the replica are made as `analytics dev --redis-cluster 3 --replicas 1` makes them."""
    for name in REDIS_NODES:
        command = " ".join(services[name]["command"])
        assert command.startswith("redis-server "), name
        for option in (
            "--cluster-enabled yes",
            "--cluster-config-file nodes.conf",
            # A master down fails only the communities of its slots, not the whole cluster.
            "--cluster-require-full-coverage no",
            "--appendonly yes",
            "--appendfsync everysec",
            # Clients are sent host names, which survive the containers' new IPs on a restart.
            f"--cluster-announce-hostname {name}",
            "--cluster-preferred-endpoint-type hostname",
        ):
            assert option in command, f"{name}: {option}"
        assert services[name]["volumes"] == [f"{name}-data:/data"]
    create = " ".join(services["redis-cluster"]["command"])
    assert services["redis-cluster"]["command"][:2] == ["sh", "-c"]
    assert "redis-cli --cluster create" in create and "--cluster-replicas 0 --cluster-yes" in create
    assert "getent hosts" in create and "cluster_state:ok" in create and "cluster meet" in create
    assert f'nodes="{" ".join(REDIS_NODES)}"' in create
    replica = services["timescaledb-replica"]
    assert replica["user"] == "postgres"  # PostgreSQL refuses to run as root
    script = replica["entrypoint"][2]
    assert replica["entrypoint"][:2] == ["sh", "-c"]
    assert "pg_isready -q -h timescaledb -U analytics" in script
    assert 'pg_basebackup -h timescaledb -U analytics -D "$$PGDATA" -R -X stream -c fast' in script
    assert 'chmod 700 "$$PGDATA"' in script and script.rstrip().endswith("exec postgres")
    assert environment(replica)["PGPASSWORD"] == environment(services["timescaledb"])["POSTGRES_PASSWORD"]


def test_scripts_leave_their_dollars_to_the_shell(services: dict[str, dict[str, Any]]) -> None:
    """Compose interpolates `$VAR` and `${VAR}` in commands: a shell's own `$` is written `$$`."""
    for name, service in services.items():
        for text in scripts(service):
            rest = re.sub(r"\$\$|\$\{\w+(:-[^}]*)?\}", "", text)
            assert "$" not in rest, f"{name}: unescaped $ in {text[:60]!r}..."


def test_the_primary_accepts_the_replica(services: dict[str, dict[str, Any]]) -> None:
    """The image's pg_hba.conf (`host all all all ...`) matches no replication connection: an init script adds one."""
    mounts = [m for m in services["timescaledb"]["volumes"] if "/docker-entrypoint-initdb.d/" in m]
    assert mounts == ["./deploy/postgres/replication.sh:/docker-entrypoint-initdb.d/replication.sh:ro"]
    source = ROOT / mounts[0].split(":")[0]
    text = source.read_text()
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert any(
        line.startswith('echo "host replication all all scram-sha-256"') and '"$PGDATA/pg_hba.conf"' in line
        for line in lines
    ), text
    # Sourced rather than run when not executable: nothing in it may change the entrypoint's shell options.
    assert not any(line.startswith(("set ", "exit")) for line in lines)


def test_images_are_pinned_to_versions(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
    # The stack runs on the same servers as the Docker-backed test run.
    assert services["timescaledb"]["image"] == services["timescaledb-replica"]["image"] == TIMESCALEDB_IMAGE
    for name in ("redis", *REDIS_NODES, "redis-cluster"):
        assert services[name]["image"] == REDIS_IMAGE, name
    assert {s["image"] for s in app_services(services).values()} == {"community-analytics:0.1.0"}
    assert {s["build"] for s in app_services(services).values()} == {"."}


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert set(spec) <= {"condition", "required"}, f"{name} -> {dependency}: {sorted(spec)}"
            assert spec["condition"] in ("service_started", "service_healthy", "service_completed_successfully")
            # Without its profile a service is not there: those outside it wait for it only if it is (`required:
            # false`), those of the same profile must have it.
            optional = bool(set(services[dependency].get("profiles") or []) - set(service.get("profiles") or []))
            assert spec.get("required", True) is not optional, f"{name} -> {dependency}: required: {not optional}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s missing healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert dependency in ONE_SHOT
    needs = {name: s.get("depends_on") or {} for name, s in services.items()}
    for name, service in services.items():
        env = environment(service)
        if name != "timescaledb" and {"DATABASE_URL", "POSTGRES_PASSWORD", "PGPASSWORD"} & set(env):
            assert needs[name].get("timescaledb") == {"condition": "service_healthy"}, name
        if "REDIS_URL" in env and name != "migrate":
            assert needs[name].get("redis") == {"condition": "service_healthy"}, name
    for name in ("api", "ingest", "worker"):
        assert needs[name]["migrate"] == {"condition": "service_completed_successfully"}, name
        # With the `scale` profile: the cluster created and the replica streaming; without it, nothing.
        assert needs[name].get("redis-cluster") == {"condition": "service_completed_successfully", "required": False}
        assert needs[name].get("timescaledb-replica") == {"condition": "service_healthy", "required": False}
    assert needs["redis-cluster"] == {node: {"condition": "service_healthy"} for node in REDIS_NODES}
    assert all(not needs[node] for node in REDIS_NODES)
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
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name} uses the undeclared volume {source}"
                used.add(source)
    assert used == declared
    mounts = {name: s.get("volumes") or [] for name, s in compose["services"].items()}
    assert "timescaledb-data:/var/lib/postgresql/data" in mounts["timescaledb"]
    assert mounts["timescaledb-replica"] == ["timescaledb-replica-data:/var/lib/postgresql/data"]
    assert "redis-data:/data" in mounts["redis"]
    for node in REDIS_NODES:
        assert mounts[node] == [f"{node}-data:/data"]
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
            # Without scale.env: one Redis for everything, no replica.
            assert settings.redis_url == settings.task_redis_url == "redis://redis:6379/0"
            assert settings.redis_cluster is False and settings.ingest_shards == 1
            assert settings.database_replica_urls() == []
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


def test_scale_env_points_the_services_at_the_scale_profile(services: dict[str, dict[str, Any]]) -> None:
    """What `--env-file scale.env` hands the app services is a valid configuration naming the profile's servers."""
    scale = read_env_file(SCALE_ENV)
    assert set(scale) == {"REDIS_CLUSTER", "REDIS_URL", "TASK_REDIS_URL", "DATABASE_REPLICA_URLS"}
    replica_url = "postgresql://analytics:analytics@timescaledb-replica:5432/analytics"
    for name in ("migrate", "api", "ingest", "worker"):
        env = environment(services[name], scale)
        settings = from_env(env, dotenv=None)
        assert settings.redis_cluster is True and settings.ingest_shards == CLUSTER_SHARDS
        assert settings.redis_url == "redis://redis-node-1:6379/0"
        assert settings.task_redis_url == "redis://redis:6379/0"  # huey needs a plain Redis
        assert settings.database_replica_urls() == [replica_url]
        assert settings.database_url == "postgresql://analytics:analytics@timescaledb:5432/analytics"
        assert settings.redis_url is not None and settings.task_redis_url is not None
        for url in (settings.redis_url, settings.task_redis_url, *settings.database_replica_urls()):
            host = urlsplit(url).hostname
            assert host in SCALE or host == "redis", f"{name}: {url} names no server of the scale profile"
    # The replica is a copy of the primary: the same user, database and password.
    secret = {"POSTGRES_PASSWORD": "s3cret"}
    assert read_env_file(SCALE_ENV, secret)["DATABASE_REPLICA_URLS"] == replica_url.replace(":analytics@", ":s3cret@")
    assert environment(services["timescaledb-replica"], secret)["PGPASSWORD"] == "s3cret"


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
    assert all("redis-cli ping" in probes[node] for node in REDIS_NODES)
    assert "pg_isready -h 127.0.0.1 " in probes["timescaledb-replica"]
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
    """A Compose v2 client: v1 (docker-compose 1.x) knows neither the top-level `name` nor depends_on `required`."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        version = subprocess.run([legacy, "version", "--short"], capture_output=True, text=True).stdout.strip()
        if not version.lstrip("v").startswith("1."):
            return [legacy]
    return None


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config` (no engine needed), when a Compose v2 client is installed."""
    command = _compose_command()
    if command is None:
        pytest.skip("no Compose v2 client (docker compose / docker-compose) on this machine")
    scale = ["--profile", "scale", "--env-file", str(SCALE_ENV)]
    for profile in ([], ["--profile", "demo"], scale, [*scale, "--profile", "demo"]):
        result = subprocess.run(
            [*command, "-f", str(COMPOSE), "--project-directory", str(ROOT), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},  # no JWT_SECRET etc. from this shell
        )
        assert result.returncode == 0, result.stderr
