"""Who may call the worker endpoint: Cloud Tasks' OIDC bearer token, or a shared-secret header.

**OIDC** (recommended): the queue's tasks carry an OIDC token minted by Google for a service account
(``oidc_service_account``); the worker verifies its signature against Google's published certificates
(``certs_url``, fetched and cached, refetched when an unknown key id appears), its expiry, its issuer, its
audience (the endpoint URL unless set) and, when configured, that it was issued to that service account
(``email`` claim, verified). Verification uses google-auth.

**Shared secret**: every task carries a header (``X-Lssm-Jobs-Secret`` by default) that the worker compares
in constant time. Simpler, and weaker: anyone who may read the queue's tasks can read the secret.

A refused request gets 401 (no or unverifiable credentials) or 403 (valid token of someone else) and never
reaches a handler; the refusal is logged on ``lssm_jobs_gcp_tasks.auth`` with the reason and the caller's
address, never the token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

log = logging.getLogger("lssm_jobs_gcp_tasks.auth")

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
SECRET_HEADER = "x-lssm-jobs-secret"
_MAX_AGE = re.compile(r"max-age=(\d+)")


@attrs.frozen(kw_only=True)
class AuthResult:
    """The verdict on one request: ``status`` 0 when allowed, else 401 or 403 with a reason for the log."""

    status: int
    reason: str = ""
    caller: str | None = None


ALLOWED = AuthResult(status=0)


class CertificateCache:
    """Google's (or a test's) token-signing certificates, ``{key id: PEM}``, fetched from ``url`` and kept for
    the response's ``Cache-Control: max-age`` (1 hour without one). An unknown key id refetches, at most once
    every ``refetch_interval`` seconds, so forged key ids cannot make the worker hammer the URL."""

    def __init__(self, url: str, *, timeout: float = 10.0, refetch_interval: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self.refetch_interval = refetch_interval
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    def _fetch(self) -> tuple[dict[str, str], float]:
        with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
            data = json.loads(response.read())
            match = _MAX_AGE.search(response.headers.get("Cache-Control", ""))
        if isinstance(data, dict) and "keys" in data:
            raise ValueError(f"{self.url} serves JWKS; use the PEM certificate URL (oauth2/v1/certs)")
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError(f"{self.url} did not return a JSON object of PEM certificates")
        return data, float(match.group(1)) if match else 3600.0

    async def certs(self, key_id: str | None) -> Mapping[str, str]:
        now = time.monotonic()
        fresh = now < self._expires
        if fresh and (key_id is None or key_id in self._certs):
            return self._certs
        async with self._lock:
            now = time.monotonic()
            stale = now >= self._expires
            unknown = key_id is not None and key_id not in self._certs
            if stale or (unknown and now - self._fetched >= self.refetch_interval):
                self._fetched = now
                certs, max_age = await asyncio.to_thread(self._fetch)
                self._certs, self._expires = certs, now + max_age
        return self._certs


class RequestVerifier:
    """Checks each request's credentials (see the module docstring).

    :param audience: the OIDC audience tokens must carry (the endpoint URL, as Cloud Tasks sets it).
    :param service_account: when set, the token's verified ``email`` must be this service account.
    :param issuers: accepted ``iss`` values (Google's by default).
    :param certs_url: where the signing certificates are published (Google's by default).
    :param shared_secret: accept requests whose secret header equals this (alone, or besides OIDC).
    :param secret_header: the header carrying it.
    :param clock_skew: seconds of tolerance on ``iat``/``exp``.
    """

    def __init__(
        self,
        *,
        audience: str | None = None,
        service_account: str | None = None,
        issuers: Sequence[str] = GOOGLE_ISSUERS,
        certs_url: str = GOOGLE_CERTS_URL,
        shared_secret: str | None = None,
        secret_header: str = SECRET_HEADER,
        clock_skew: int = 10,
        allow_unauthenticated: bool = False,
    ) -> None:
        if audience is None and shared_secret is None and not allow_unauthenticated:
            raise ValueError(
                "the Cloud Tasks worker endpoint needs oidc_audience= (OIDC tokens) or shared_secret=; pass "
                "allow_unauthenticated=True only for a private development setup"
            )
        self.audience = audience
        self.service_account = service_account
        self.issuers = tuple(issuers)
        self.certs = CertificateCache(certs_url) if audience is not None else None
        self.shared_secret = shared_secret.encode() if shared_secret is not None else None
        self.secret_header = secret_header.lower()
        self.clock_skew = clock_skew
        self.allow_unauthenticated = allow_unauthenticated

    async def verify(self, headers: Mapping[str, str]) -> AuthResult:
        """``headers`` with lowercase names."""
        if self.shared_secret is not None:
            given = headers.get(self.secret_header)
            if given is not None:
                if hmac.compare_digest(given.encode(), self.shared_secret):
                    return ALLOWED
                return AuthResult(status=401, reason="wrong shared secret")
        authorization = headers.get("authorization")
        if self.certs is not None and authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return AuthResult(status=401, reason="Authorization header is not a bearer token")
            return await self._verify_token(token.strip())
        if self.allow_unauthenticated and self.certs is None and self.shared_secret is None:
            return ALLOWED
        wanted = " or ".join(
            part
            for part, on in (
                ("an OIDC bearer token", self.certs),
                ("the shared secret header", self.shared_secret),
            )
            if on is not None
        )
        return AuthResult(status=401, reason=f"no credentials: expected {wanted}")

    async def _verify_token(self, token: str) -> AuthResult:
        assert self.certs is not None
        try:
            header: dict[str, Any] = jwt.decode_header(token)  # type: ignore[no-untyped-call]
        except (ValueError, auth_exceptions.GoogleAuthError) as error:
            return AuthResult(status=401, reason=f"malformed token: {_short(error)}")
        try:
            certs = await self.certs.certs(header.get("kid"))
        except Exception as error:  # the certificate URL is down: refuse, Cloud Tasks retries later
            log.error("cannot fetch the OIDC certificates from %s: %s", self.certs.url, _short(error))
            return AuthResult(status=401, reason="signing certificates unavailable")
        try:
            claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=dict(certs), audience=self.audience, clock_skew_in_seconds=self.clock_skew
            )
        except (ValueError, auth_exceptions.GoogleAuthError) as error:
            return AuthResult(status=401, reason=f"token rejected: {_short(error)}")
        if claims.get("iss") not in self.issuers:
            return AuthResult(status=401, reason=f"token from an unexpected issuer {claims.get('iss')!r}")
        email = claims.get("email")
        if self.service_account is not None and (
            email != self.service_account or claims.get("email_verified") is not True
        ):
            return AuthResult(status=403, reason=f"token of {email!r}, not of the configured service account")
        return AuthResult(status=0, caller=email)


def _short(error: BaseException) -> str:
    """An error's first line, cut short; google-auth's messages never hold the token itself."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:160]
