"""JWT bearer tokens: the claims this service reads, decoding with a clear reason on failure, and issuing.

Claims: `sub` (the user id; for service tokens the service's name), `staff` (bool), `moderated_communities`
(list of community ids), `type` (`user`, the default, or `service`: a backend that tracks on behalf of
users), `exp` (required), and `aud` / `iss` when JWT_AUDIENCE / JWT_ISSUER are set.

Each API process keeps the principals of the tokens it decoded in a `TokenCache` (one per application, so per
settings): a verified token is decoded once, then only its expiry is checked until it falls out of the cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import jwt
import msgspec

from service.core.errors import AuthenticationFailed
from service.core.settings import ConfigError, Settings

KeyScope = Literal["track", "read"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller: a user or a service (a JWT or a browser session), or an API key (`ak_...`)."""

    kind: Literal["user", "service", "key"]
    subject: str  # the token's `sub`; an API key's id
    user_id: int | None  # users only: `sub` as a number
    staff: bool = False
    moderated: frozenset[int] = frozenset()
    # API keys only: what the key may do (the routes marked for its scope), and for which communities (None: all).
    scope: KeyScope | None = None
    communities: frozenset[int] | None = None
    secret_hash: bytes | None = None  # the SHA-256 of the key, to ask later whether it has been revoked

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    @property
    def key(self) -> str:
        """Who this is, as the per-principal limits count it (`user:7`, `service:backend`, `key:3`)."""
        return f"{self.kind}:{self.subject}"

    def moderates(self, community_id: int) -> bool:
        """May read this community's reports: its moderator, or a read key for it."""
        if self.kind == "key":
            return self.scope == "read" and self.covers(community_id)
        return community_id in self.moderated

    def covers(self, community_id: int | None) -> bool:
        """An API key's community list holds this community (every community without a list)."""
        return self.communities is None or community_id in self.communities


def _verification_key(settings: Settings) -> str | bytes:
    if settings.jwt_algorithm == "RS256":
        assert settings.jwt_public_key_file is not None  # checked by Settings
        return Path(settings.jwt_public_key_file).read_bytes()
    if settings.jwt_secret is None:
        raise AuthenticationFailed("authentication is not configured on this server (JWT_SECRET is unset)")
    return settings.jwt_secret


def decode_token(settings: Settings, token: str) -> Principal:
    """The principal of a bearer token, or AuthenticationFailed naming what is wrong with it."""
    return verify_token(settings, token)[0]


def verify_token(settings: Settings, token: str) -> tuple[Principal, float]:
    """The principal of a bearer token and its `exp` claim (seconds since the epoch), or AuthenticationFailed."""
    options: Any = {"require": ["exp", "sub"], "verify_aud": settings.jwt_audience is not None}
    try:
        claims = jwt.decode(
            token,
            _verification_key(settings),
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway,
            options=options,
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthenticationFailed("token signature is not valid") from None
    except jwt.InvalidAudienceError:
        raise AuthenticationFailed(f"token audience is not {settings.jwt_audience!r}") from None
    except jwt.InvalidIssuerError:
        raise AuthenticationFailed(f"token issuer is not {settings.jwt_issuer!r}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationFailed(f"token lacks the `{exc.claim}` claim") from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationFailed("token is not valid yet (nbf/iat in the future)") from None
    except jwt.InvalidAlgorithmError:
        raise AuthenticationFailed(f"token is not signed with {settings.jwt_algorithm}") from None
    except jwt.DecodeError:
        raise AuthenticationFailed("token is malformed (not a signed JWT)") from None
    except jwt.InvalidTokenError as exc:
        raise AuthenticationFailed(f"token is not valid ({exc})") from None
    # pyjwt takes numeric strings for the time claims ("exp": "1700000000"); RFC 7519 says NumericDate, a number.
    for claim in ("exp", "nbf", "iat"):
        value = claims.get(claim)
        if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise AuthenticationFailed(f"token `{claim}` claim must be a number (seconds since the epoch)")
    return principal_from_claims(claims), float(claims["exp"])


class TokenCache:
    """The principals of recently verified tokens, for one application's settings (secret or key, audience,
    issuer, leeway): a bounded LRU from the token to (principal, exp).

    A hit is trusted only while `exp` + JWT_LEEWAY has not passed, the same test the full decode makes, so a
    cached token expires exactly when a decoded one would. Failures are never cached: a refused token is
    verified again on every request (and answered with the same reason).
    """

    def __init__(self, settings: Settings, size: int = 4096) -> None:
        self.settings = settings
        self.size = size
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def principal(self, token: str) -> Principal:
        """The principal of `token` (from the cache when verified before and not expired since), or
        AuthenticationFailed naming what is wrong with it."""
        entry = self._entries.get(token)
        if entry is not None:
            principal, expires = entry
            if time.time() < expires + self.settings.jwt_leeway:
                self._entries.move_to_end(token)
                return principal
            del self._entries[token]  # expired: the full decode below refuses it with the usual reason
        principal, expires = verify_token(self.settings, token)
        self._entries[token] = (principal, expires)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return principal

    def __len__(self) -> int:
        return len(self._entries)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Check the claims this service reads and build the principal."""
    kind = claims.get("type", "user")
    if kind not in ("user", "service"):
        raise AuthenticationFailed("token `type` claim must be `user` or `service`")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise AuthenticationFailed("token `sub` claim must be a non-empty string")
    staff = claims.get("staff", False)
    if not isinstance(staff, bool):
        raise AuthenticationFailed("token `staff` claim must be true or false")
    moderated = claims.get("moderated_communities", [])
    if not isinstance(moderated, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in moderated):
        raise AuthenticationFailed("token `moderated_communities` claim must be a list of community ids")
    user_id: int | None = None
    if kind == "user":
        if not subject.isdigit() or int(subject) < 1 or int(subject) > 2**63 - 1:
            raise AuthenticationFailed("token `sub` claim must be the user id (a positive integer)")
        user_id = int(subject)
    return Principal(kind=kind, subject=subject, user_id=user_id, staff=staff, moderated=frozenset(moderated))


def issue_token(
    settings: Settings,
    subject: str,
    *,
    staff: bool = False,
    moderated: Iterable[int] = (),
    service: bool = False,
    lifetime: float = 3600.0,
    private_key: str | bytes | None = None,
) -> str:
    """A signed token with these claims (HS256 with JWT_SECRET; RS256 needs the issuer's `private_key`)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "type": "service" if service else "user",
        "staff": staff,
        "moderated_communities": sorted(set(moderated)),
        "iat": now,
        "exp": now + int(lifetime),
    }
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_algorithm == "RS256":
        if private_key is None:
            raise ConfigError("RS256 tokens are signed by the issuer's private key: pass it (--private-key)")
        return jwt.encode(claims, private_key, algorithm="RS256")
    if settings.jwt_secret is None:
        raise ConfigError("JWT_SECRET: must be set to issue tokens")
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
