"""Google Cloud Monitoring (Stackdriver) MQL, as Flagger queries it, over the REST API:
``POST /v3/projects/<project>/timeSeries:query`` with ``{"query": MQL}``; the value is the first
series' first point's first value (``doubleValue``, or ``int64Value``).

Credentials: the secret's ``project`` and ``serviceAccountKey`` (a service account's JSON key, as
in Flagger), else the key file named by ``GOOGLE_APPLICATION_CREDENTIALS``. The key signs a JWT
(RS256) exchanged at its ``token_uri`` for an access token (scope ``monitoring.read``), kept until
a minute before it expires. Workload identity (the metadata server) is not used. No series, no
points, NaN or an error answer is no data.
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from federation.core.spec import MetricProvider
from federation.metrics.backends import http, secrets
from federation.metrics.prometheus import NoData, Unreachable

DEFAULT = "https://monitoring.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/monitoring.read"


def escape(value: str) -> str:
    """The body of an MQL single-quoted string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(key: dict[str, Any], now: float) -> str:
    """A signed JWT asking ``key['token_uri']`` for a monitoring.read token."""
    private = serialization.load_pem_private_key(key["private_key"].encode(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise NoData("stackdriver: the service account key is not an RSA key")
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": key.get("private_key_id", "")}).encode())
    claims = _b64(json.dumps({"iss": key["client_email"], "scope": SCOPE, "aud": key["token_uri"],
                              "iat": int(now), "exp": int(now) + 3600}).encode())
    signature = private.sign(f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{_b64(signature)}"


class Stackdriver:
    escape = staticmethod(escape)

    def __init__(self, provider: MetricProvider, store: secrets.Store, timeout: float) -> None:
        self.base = provider.address or DEFAULT
        self.ref = provider.secret_ref.name if provider.secret_ref else "stackdriver"
        self.store = store
        self.verify = not provider.insecure_skip_verify
        self.extra = http.extra_headers(provider)
        self.timeout = timeout
        self._token: tuple[str, float] | None = None  # (access token, expiry)

    def _key(self) -> dict[str, Any]:
        text = self.store.value(self.ref, "serviceAccountKey")
        if text is None and os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            try:
                text = Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"]).read_text(encoding="utf-8")
            except OSError as exc:
                raise NoData(f"stackdriver: cannot read GOOGLE_APPLICATION_CREDENTIALS: {exc.strerror}") from None
        if text is None:
            raise NoData(f"stackdriver: secret {self.ref!r} has no 'serviceAccountKey' (set "
                         f"{secrets.env_name(self.ref, 'serviceAccountKey')}, write {self.store.dir / self.ref}/"
                         "serviceAccountKey, or set GOOGLE_APPLICATION_CREDENTIALS)")
        try:
            key = json.loads(text)
            if not all(k in key for k in ("client_email", "private_key", "token_uri")):
                raise ValueError
        except ValueError:
            raise NoData("stackdriver: serviceAccountKey is not a service account JSON key") from None
        return dict(key)

    async def _access_token(self, now: float) -> str:
        if self._token is not None and now < self._token[1] - 60:
            return self._token[0]
        key = self._key()
        form = f"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion(key, now)}"
        r = await http.request("stackdriver token", key["token_uri"], "POST", "", timeout=self.timeout,
                               headers={"Content-Type": "application/x-www-form-urlencoded"}, content=form.encode())
        try:
            answer = r.json()
            token, expires = str(answer["access_token"]), float(answer.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise Unreachable("stackdriver token: unexpected answer") from None
        self._token = (token, now + expires)
        return token

    async def scalar(self, query: str, at: float) -> float:
        project = self.store.require(self.ref, "project", "stackdriver")
        token = await self._access_token(time.time())
        r = await http.request("stackdriver", self.base, "POST", f"/v3/projects/{project}/timeSeries:query",
                               timeout=self.timeout, verify=self.verify, extra=self.extra, content=json.dumps({"query": query}).encode(),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            answer = r.json()
        except ValueError:
            raise Unreachable(f"stackdriver {self.base}: answer is not JSON") from None
        series = answer.get("timeSeriesData") if isinstance(answer, dict) else None
        if not series or not series[0].get("pointData") or not series[0]["pointData"][0].get("values"):
            raise NoData("empty result")
        v = series[0]["pointData"][0]["values"][0]
        raw = v.get("doubleValue", v.get("int64Value"))
        if raw is None:
            raise NoData("empty result")
        value = float(raw)
        if math.isnan(value):
            raise NoData("NaN result")
        return value
