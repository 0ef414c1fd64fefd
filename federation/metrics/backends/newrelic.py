"""New Relic NRQL, as Flagger queries it: NerdGraph (``POST /graphql``, header ``Api-Key`` from the
secret's ``newrelic_api_key``) when that key is there, else the Insights query API (``GET
/v1/accounts/<id>/query?nrql=``, header ``X-Query-Key`` from ``newrelic_query_key``). Both need
``newrelic_account_id``; the NRQL gets `` SINCE <interval seconds> SECONDS ago``. The value is the
first number of the first result. No result, null, NaN, GraphQL ``errors`` or an error answer is no
data.
"""

from __future__ import annotations

import json
import math
from typing import Any

from federation.core.spec import MetricProvider
from federation.metrics.backends import http, secrets
from federation.metrics.prometheus import NoData, Unreachable

NERDGRAPH = "https://api.newrelic.com/graphql"
INSIGHTS = "https://insights-api.newrelic.com"
_GQL = "query ($query: Nrql!) { actor { account(id: %d) { nrql(query: $query) { results } } } }"


def escape(value: str) -> str:
    """The body of an NRQL single-quoted string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _first_number(results: Any) -> float:
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise NoData("empty result")
    for v in results[0].values():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if math.isnan(float(v)):
                raise NoData("NaN result")
            return float(v)
    raise NoData("empty result")


class NewRelic:
    escape = staticmethod(escape)

    def __init__(self, provider: MetricProvider, store: secrets.Store, timeout: float, window: float) -> None:
        self.ref = provider.secret_ref.name if provider.secret_ref else "newrelic"
        self.store = store
        self.address = provider.address
        self.verify = not provider.insecure_skip_verify
        self.extra = http.extra_headers(provider)
        self.timeout = timeout
        self.since = int(window)

    async def scalar(self, query: str, at: float) -> float:
        account = self.store.require(self.ref, "newrelic_account_id", "newrelic")
        if not account.isdigit():
            raise NoData("newrelic: newrelic_account_id is not a number")
        nrql = f"{query.strip()} SINCE {self.since} SECONDS ago"
        api_key = self.store.value(self.ref, "newrelic_api_key")
        if api_key:
            base = self.address or NERDGRAPH
            body = json.dumps({"query": _GQL % int(account), "variables": {"query": nrql}}).encode()
            r = await http.request("newrelic", base, "POST", "", timeout=self.timeout, verify=self.verify, extra=self.extra,
                                   headers={"Api-Key": api_key, "Content-Type": "application/json"}, content=body)
            answer = self._json(r.text, base)
            if answer.get("errors"):
                raise Unreachable(f"newrelic {base}: {str(answer['errors'][0].get('message', 'query error'))[:200]}")
            try:
                results = answer["data"]["actor"]["account"]["nrql"]["results"]
            except (KeyError, TypeError):
                raise NoData("empty result") from None
            return _first_number(results)
        key = self.store.require(self.ref, "newrelic_query_key", "newrelic")
        base = self.address or INSIGHTS
        r = await http.request("newrelic", base, "GET", f"/v1/accounts/{account}/query", timeout=self.timeout,
                               verify=self.verify, extra=self.extra, params={"nrql": nrql}, headers={"X-Query-Key": key})
        return _first_number(self._json(r.text, base).get("results"))

    @staticmethod
    def _json(text: str, base: str) -> dict[str, Any]:
        try:
            body = json.loads(text)
        except ValueError:
            raise Unreachable(f"newrelic {base}: answer is not JSON") from None
        if not isinstance(body, dict):
            raise Unreachable(f"newrelic {base}: unexpected answer")
        return body
