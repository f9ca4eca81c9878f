"""Bearer tokens: what is accepted, and a 401 with a clear reason for everything else."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import TestClient

from service.app import create_app
from service.auth.tokens import decode_token, issue_token
from service.core.errors import AuthenticationFailed
from service.core.settings import Settings
from tests.support import TEST_JWT_SECRET


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "7", "staff": False, "iat": now, "exp": now + 600, **changes}
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(claims: dict[str, Any], secret: str = TEST_JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _me(settings: Settings, header: str | None) -> tuple[int, dict[str, Any], str]:
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/auth/me/", headers={"Authorization": header} if header else {})
    return response.status_code, response.json(), response.headers.get("www-authenticate", "")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "authentication required: send `Authorization: Bearer <token>` or a session cookie"),
        ("Basic dXNlcjpwYXNz", "Authorization header must be `Bearer <token>`"),
        ("Bearer not.a.jwt", "token is malformed (not a signed JWT)"),
        ("Bearer abc", "token is malformed (not a signed JWT)"),
        (f"Bearer {_hs256(_claims(exp=int(time.time()) - 3600))}", "token expired"),
        (f"Bearer {_hs256(_claims(), secret='another-secret-of-at-least-32-chars!!')}", "token signature is not valid"),
        (f"Bearer {_hs256(_claims(exp=None))}", "token lacks the `exp` claim"),
        (f"Bearer {_hs256(_claims(sub=None))}", "token lacks the `sub` claim"),
        (f"Bearer {_hs256(_claims(sub='alice'))}", "token `sub` claim must be the user id (a positive integer)"),
        (f"Bearer {_hs256(_claims(staff='yes'))}", "token `staff` claim must be true or false"),
        (f"Bearer {_hs256(_claims(moderated_communities=['5']))}",
         "token `moderated_communities` claim must be a list of community ids"),
        (f"Bearer {_hs256(_claims(type='admin'))}", "token `type` claim must be `user` or `service`"),
        (f"Bearer {jwt.encode(_claims(), TEST_JWT_SECRET * 2, algorithm='HS512')}", "token is not signed with HS256"),
        (f"Bearer {_hs256(_claims(nbf=int(time.time()) + 3600))}", "token is not valid yet (nbf/iat in the future)"),
        (f"Bearer {_hs256(_claims(exp=str(int(time.time()) + 600)))}",
         "token `exp` claim must be a number (seconds since the epoch)"),
        (f"Bearer {_hs256(_claims(iat=str(int(time.time()))))}",
         "token `iat` claim must be a number (seconds since the epoch)"),
    ],
    ids=["missing", "basic", "malformed", "garbage", "expired", "wrong-signature", "no-exp", "no-sub", "sub-not-id",
         "staff-not-bool", "moderated-not-ids", "unknown-type", "wrong-algorithm", "not-yet-valid", "exp-as-text",
         "iat-as-text"],
)  # fmt: skip
def test_refused_tokens_get_401_with_the_reason(settings: Settings, header: str | None, reason: str) -> None:
    status, body, challenge = _me(settings, header)
    assert (status, body["detail"]) == (401, reason)
    assert challenge.startswith("Bearer")
    if header is not None and header.startswith("Bearer"):
        assert 'error="invalid_token"' in challenge


def test_audience_and_issuer_are_checked_when_configured(settings_for: Callable[..., Settings], database_url: str,
                                                         redis_url: str) -> None:  # fmt: skip
    settings = settings_for(database_url, redis_url, JWT_AUDIENCE="analytics", JWT_ISSUER="https://platform.example")
    good = _claims(aud="analytics", iss="https://platform.example")
    assert _me(settings, f"Bearer {_hs256(good)}")[0] == 200
    cases = {
        "token audience is not 'analytics'": {**good, "aud": "billing"},
        "token lacks the `aud` claim": {k: v for k, v in good.items() if k != "aud"},
        "token issuer is not 'https://platform.example'": {**good, "iss": "https://evil.example"},
    }
    for reason, claims in cases.items():
        status, body, _ = _me(settings, f"Bearer {_hs256(claims)}")
        assert (status, body["detail"]) == (401, reason)


def test_clock_skew_within_the_leeway_is_tolerated(settings_for: Callable[..., Settings], database_url: str,
                                                   redis_url: str) -> None:  # fmt: skip
    settings = settings_for(database_url, redis_url, JWT_LEEWAY="60")
    just_expired = _hs256(_claims(exp=int(time.time()) - 20))
    assert _me(settings, f"Bearer {just_expired}")[0] == 200
    long_expired = _hs256(_claims(exp=int(time.time()) - 120))
    assert _me(settings, f"Bearer {long_expired}")[1]["detail"] == "token expired"


def test_rs256_public_key(tmp_path: Path, settings_for: Callable[..., Settings], database_url: str,
                          redis_url: str) -> None:  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "issuer.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    settings = settings_for(database_url, redis_url, JWT_ALGORITHM="RS256", JWT_PUBLIC_KEY_FILE=str(public))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token = issue_token(settings, "7", moderated=[5], private_key=private)
    status, body, _ = _me(settings, f"Bearer {token}")
    assert status == 200
    assert body == {"kind": "user", "subject": "7", "user_id": 7, "staff": False, "moderated_communities": [5],
                    "authenticated_by": "token"}  # fmt: skip
    # An HS256 token signed with the public key as the secret (the classic confusion attack) is refused.
    forged = jwt.encode(_claims(staff=True), "x" * 32, algorithm="HS256")
    assert _me(settings, f"Bearer {forged}")[1]["detail"] == "token is not signed with RS256"


def test_service_tokens_name_a_backend(settings: Settings) -> None:
    principal = decode_token(settings, issue_token(settings, "platform-backend", service=True))
    assert (principal.kind, principal.subject, principal.user_id, principal.staff) == (
        "service", "platform-backend", None, False,
    )  # fmt: skip
    with pytest.raises(AuthenticationFailed, match="positive integer"):
        decode_token(settings, issue_token(settings, "platform-backend"))
