"""Configuration: defaults, `.env`, and one clear line for every wrong value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.core.settings import ConfigError, from_env, settings_table

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    settings = from_env({}, dotenv=None)
    assert settings.database_url is None
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.retention_raw_days == 90
    assert settings.jwt_algorithm == "HS256"


def test_values_are_converted() -> None:
    settings = from_env(
        {"ANALYTICS_PORT": "9001", "DATABASE_WAIT": "2.5", "DATABASE_URL": "postgresql://u@h/db"}, dotenv=None
    )
    assert (settings.port, settings.db_wait, settings.database_url) == (9001, 2.5, "postgresql://u@h/db")


def test_empty_value_means_default() -> None:
    assert from_env({"ANALYTICS_PORT": ""}, dotenv=None).port == 8000


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ANALYTICS_PORT=9100\nANALYTICS_HOST=0.0.0.0\n")
    settings = from_env({"ANALYTICS_PORT": "9200"}, dotenv=dotenv)
    assert (settings.host, settings.port) == ("0.0.0.0", 9200)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ANALYTICS_PORT": "abc"}, "ANALYTICS_PORT: expected an integer between 1 and 65535 (got 'abc')"),
        ({"ANALYTICS_PORT": "70000"}, "ANALYTICS_PORT: expected an integer between 1 and 65535 (got '70000')"),
        ({"ANALYTICS_LOG_LEVEL": "loud"}, "ANALYTICS_LOG_LEVEL: expected one of DEBUG, ERROR, INFO, WARNING"),
        ({"RETENTION_RAW_DAYS": "0"}, "RETENTION_RAW_DAYS: expected an integer between 1 and 36500 (got '0')"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL: expected a URL starting with postgresql:// or postgres://"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL: expected a URL starting with redis:// or rediss:// or unix://"),
        ({"DATABASE_POOL_MIN": "20"}, "DATABASE_POOL_MIN: expected at most DATABASE_POOL_MAX (10)"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET: expected at least 32 characters"),
        ({"JWT_ALGORITHM": "RS256"}, "JWT_PUBLIC_KEY_FILE: expected a PEM public key file when JWT_ALGORITHM is"),
        ({"GEOIP_DATABASE": "/no/such.mmdb"}, "GEOIP_DATABASE: expected an existing file, '/no/such.mmdb' is not"),
    ],
)
def test_wrong_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(env, dotenv=None)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_task_settings_take_either_documented_name() -> None:
    settings = from_env(
        {
            "TASK_SCHEDULES": " update-daily-analytics = */5 * * * * ; process_error_logs=0 * * * *;",
            "TASKS_DISABLED": "cleanup-old-analytics, refresh_rollups,",
        },
        dotenv=None,
    )
    assert settings.task_schedules() == {"update_daily_analytics": "*/5 * * * *", "process_error_logs": "0 * * * *"}
    assert settings.disabled_tasks() == {"cleanup_old_analytics", "refresh_rollups"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TASK_SCHEDULES": "nope=* * * * *"}, "TASK_SCHEDULES: expected `task=cron` with a known task, got 'nope="),
        ({"TASK_SCHEDULES": "update_daily-analytics=* * * * *"},
         "TASK_SCHEDULES: expected `task=cron` with a known task, got 'update_daily-analytics="),
        ({"TASK_SCHEDULES": "refresh_rollups"},
         "TASK_SCHEDULES: expected `task=cron` with a known task, got 'refresh_rollups'"),
        ({"TASK_SCHEDULES": "refresh-rollups=61 * * * *"}, "TASK_SCHEDULES: refresh-rollups: 61 is not a valid input"),
        ({"TASK_SCHEDULES": "refresh_rollups=* * *"},
         "TASK_SCHEDULES: refresh_rollups: expected 5 cron fields (minute hour day month weekday), got '* * *'"),
        ({"TASKS_DISABLED": "refresh_rollups,nope"}, "TASKS_DISABLED: unknown task 'nope'"),
        ({"TASKS_DISABLED": "refresh-rollups_"}, "TASKS_DISABLED: unknown task 'refresh-rollups_'"),
    ],
)  # fmt: skip
def test_wrong_task_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env(env, dotenv=None)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_cli_stops_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "migrate"],
        env={"PATH": "/usr/bin:/bin", "ANALYTICS_PORT": "port"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "analytics: configuration error: ANALYTICS_PORT: expected an integer between 1 and 65535 (got 'port')\n"
    )


def test_readme_lists_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme, "README's configuration table differs from service/core/settings.py"
