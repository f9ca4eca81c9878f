"""`analytics token` prints a token the API accepts: with JWT_SECRET, or the secret `analytics dev` keeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.auth.tokens import Principal, decode_token
from service.core.settings import from_env
from service.tools.dev import dev_jwt_secret
from tests.support import TEST_JWT_SECRET


def _token(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "token", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_user_and_service_tokens(tmp_path: Path) -> None:
    env = {"JWT_SECRET": TEST_JWT_SECRET, "PYTHONPATH": str(Path.cwd())}
    done = _token(env, "--user", "7", "--moderate", "5,6", "--lifetime", "120", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    settings = from_env({"JWT_SECRET": TEST_JWT_SECRET}, dotenv=None)
    assert decode_token(settings, done.stdout.strip()) == Principal(
        kind="user", subject="7", user_id=7, staff=False, moderated=frozenset({5, 6})
    )
    service = _token(env, "--service", "platform-backend", "--staff", cwd=tmp_path)
    assert decode_token(settings, service.stdout.strip()) == Principal(
        kind="service", subject="platform-backend", user_id=None, staff=True
    )
    bad = _token(env, "--moderate", "five", cwd=tmp_path)
    assert bad.returncode == 2 and "expected community ids" in bad.stderr


def test_the_development_secret(tmp_path: Path) -> None:
    env = {"ANALYTICS_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(Path.cwd())}
    missing = _token(env, cwd=tmp_path)
    assert missing.returncode == 2
    assert "run `analytics dev` once" in missing.stderr
    secret = dev_jwt_secret(tmp_path / "data", create=True)  # what `analytics dev` does on its first start
    assert (tmp_path / "data" / "jwt-secret").stat().st_mode & 0o077 == 0
    done = _token(env, "--user", "3", "--staff", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    principal = decode_token(from_env({"JWT_SECRET": secret}, dotenv=None), done.stdout.strip())
    assert (principal.user_id, principal.staff) == (3, True)
