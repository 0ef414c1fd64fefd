"""AWS Signature Version 4 for one request (the header form), as AWS documents it: a canonical
request, a string to sign over its hash, a key derived from the secret by date, region and service.
Pure; checked against AWS's published example (``tests/unit/test_backends.py``).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(f"AWS4{secret}".encode(), date)
    return _hmac(_hmac(_hmac(k, region), service), "aws4_request")


def authorization(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], payload: bytes,
                  *, access_key: str, secret_key: str, region: str, service: str, amz_date: str) -> str:
    """The ``Authorization`` header value. ``headers`` must hold ``host`` and ``x-amz-date`` (and
    every other header to sign); ``amz_date`` is ``YYYYMMDDTHHMMSSZ``."""
    canonical_headers = {k.lower().strip(): " ".join(v.split()) for k, v in headers.items()}
    signed = ";".join(sorted(canonical_headers))
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query))
    canonical = "\n".join([method, quote(path or "/", safe="/-_.~"), canonical_query,
                           "".join(f"{k}:{canonical_headers[k]}\n" for k in sorted(canonical_headers)), signed,
                           hashlib.sha256(payload).hexdigest()])
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(secret_key, date, region, service), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
