"""Spec models: ``Fleet`` and ``FederatedCanary`` (apiVersion ``federation.io/v1alpha1``).

Field names are Kubernetes-style camelCase on the wire; Flagger's ``analysis`` fields are kept
verbatim so a Flagger ``Canary``'s analysis block validates unchanged. Unknown fields are errors.

Callers: ``federation.specfiles`` (loading files, turning validation errors into ``Problem``s),
``core.plan`` and ``core.decide`` (reading the validated model).
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import math
import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from federation.core import durations, outbound, querytemplate

API_VERSION = "federation.io/v1alpha1"
BASIS_POINTS = 10_000
BUILTIN_METRICS = ("request-success-rate", "request-duration")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")

# Limits on what a spec may say (docs/limits.md lists them all). Strings, lists and maps are
# bounded so that one document cannot make the hub, plan or render spend unbounded memory or time.
MAX_STRING = 16 * 1024  # any string field (a PromQL query is the longest legitimate one)
MAX_NAME = 63  # DNS-1123 label, as Kubernetes
MAX_VERSION = 63
MAX_LIST = 100  # metrics, webhooks, alerts, match rules, stepWeights, zones of a placement
MAX_ZONES = 200  # zones of a fleet
MAX_HOSTS = 1000  # hosts of one vm zone
MAX_MAP = 256  # labels, annotations, metadata, template variables, headers
MIN_INTERVAL = 1.0  # seconds: analysis and metric intervals
MAX_DURATION = 168 * 3600.0  # seconds: any duration (one week)
MAX_COUNT = 10_000  # iterations, threshold, retries
MAX_SECONDS = 7 * 24 * 3600  # progressDeadlineSeconds, cookie maxAge
MAX_RELATIVE = 1_000_000  # capacity, zoneWeights


class Model(pydantic.BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields refused, immutable."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        str_max_length=MAX_STRING,
        hide_input_in_errors=True,  # an error never repeats a value (a URL may carry a secret)
    )


def _duration(value: str) -> str:
    seconds = durations.parse(value)
    if not 0 < seconds <= MAX_DURATION:
        raise ValueError(f"duration {value!r} must be greater than 0 and at most 168h")
    return value


def _interval(value: str) -> str:
    seconds = durations.parse(value)
    if not MIN_INTERVAL <= seconds <= MAX_DURATION:
        raise ValueError(f"interval {value!r} must be between 1s and 168h")
    return value


Duration = Annotated[str, pydantic.AfterValidator(_duration)]
Interval = Annotated[str, pydantic.AfterValidator(_interval)]


def _shown(value: str) -> str:
    """A bad value for an error line: bounded, control characters escaped."""
    shown = repr(value[:80])
    return shown + ("..." if len(value) > 80 else "")


def _name(value: str) -> str:
    if len(value) > MAX_NAME or not _DNS_LABEL.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a DNS label (DNS-1123: lowercase letters, digits and '-', "
                         f"at most {MAX_NAME})")
    return value


Name = Annotated[str, pydantic.AfterValidator(_name)]


def _version(value: str) -> str:
    if len(value) > MAX_VERSION or not _VERSION.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not a version (letters, digits, '.', '_' and '-', at most "
                         f"{MAX_VERSION}, starting and ending with a letter or digit)")
    return value


Version = Annotated[str, pydantic.AfterValidator(_version)]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return value


Finite = Annotated[float, pydantic.AfterValidator(_finite)]


def percent_to_bp(value: float) -> int:
    """Basis points for a percentage; refuses values that are not whole basis points."""
    bp = value * 100
    if not math.isfinite(bp) or abs(bp - round(bp)) > 1e-6:
        raise ValueError(f"{value} has more than two decimals; weights are kept in basis points (0.01%)")
    return round(bp)


def _percent(value: float) -> float:
    if not 0 <= value <= 100:  # NaN and infinities are refused here too
        raise ValueError(f"{value} is not a percentage between 0 and 100")
    percent_to_bp(value)
    return value


Percent = Annotated[float, pydantic.AfterValidator(_percent)]


class Metadata(Model):
    name: Name
    namespace: Name = "default"
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_MAP)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=MAX_MAP)


# ----------------------------------------------------------------------------- Fleet


class GitAuth(Model):
    """Where Git credentials come from. Values are never stored in specs, only where to read them."""

    username: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    ssh_key_file: str | None = None
    ssh_known_hosts: str | None = None  # pinned host keys of an SSH remote (else the system's known_hosts)


class SigningFormat(str, enum.Enum):
    SSH = "ssh"
    OPENPGP = "openpgp"


class GitSigning(Model):
    """Sign the hub's commits: ``key`` is an SSH private key file (format ssh) or an OpenPGP key id
    or fingerprint in the hub's GnuPG keyring (format openpgp, GNUPGHOME of the hub's environment)."""

    key: str
    format: SigningFormat = SigningFormat.SSH


class GitSource(Model):
    url: str
    branch: str = "main"
    path: str = "."
    auth: GitAuth | None = None
    pull_request: bool = False
    signing: GitSigning | None = None

    @field_validator("url")
    @classmethod
    def _no_secret(cls, v: str) -> str:
        if "://" in v:
            parts = urllib.parse.urlsplit(v)
            if parts.password is not None or (parts.username is not None and parts.scheme in ("http", "https")):
                raise ValueError("credentials in the URL are refused (use auth.tokenEnv or auth.tokenFile)")
        return v

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        if v.startswith("/") or ".." in v.split("/"):
            raise ValueError(f"{v!r} must be a path inside the repository")
        return v


class PrometheusAuth(Model):
    bearer_token_env: str | None = None
    bearer_token_file: str | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False


class PrometheusSource(Model):
    url: str
    auth: PrometheusAuth | None = None
    timeout: Duration = "10s"

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        problem = outbound.url_problem(v)
        if problem is not None:
            raise ValueError(f"{outbound.redact(v)!r} {problem}")
        return v


class Endpoint(Model):
    address: str
    port: int = Field(ge=1, le=65535)
    admin_port: int | None = Field(default=None, ge=1, le=65535)


class Host(Model):
    address: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "fed-agent"


class Kubeconfig(Model):
    path: str | None = None
    context: str | None = None
    in_cluster: bool = False


class ZoneRouteKind(str, enum.Enum):
    """The object that splits a Kubernetes zone's traffic between its local versions."""

    NONE = "none"  # the global route names every (zone, version) backend (Kuma's MeshHTTPRoute, Istio)
    HTTPROUTE = "httproute"  # Gateway API HTTPRoute on the service (Linkerd's mesh mode)
    TRAFFICSPLIT = "trafficsplit"  # SMI TrafficSplit (linkerd-smi)


class FluxRef(Model):
    """Where a Kubernetes zone's Flux applies its Git path."""

    namespace: str = "flux-system"
    kustomization: str | None = None  # default: the zone's name
    git_repository: str | None = None  # default: the Kustomization's name
    workload_namespace: str | None = None  # where <service>-<version> Deployments run (default: the canary's)
    # The directory (below the zone's git.path) that the zone's Kustomization applies: the hub writes
    # each version's Deployment and Service there, under <path>/<service>/. The ZoneRelease sits
    # outside it (it is not a Kubernetes kind).
    path: str = "deploy"
    # How the zone splits between its versions; default from the mesh provider (kuma, istio: none;
    # smi: trafficsplit; gatewayapi, envoy: httproute).
    local_route: ZoneRouteKind | None = None
    # How many replicas a version's Deployment runs: "fixed" (its own replicas, whatever its weight)
    # or "weight" (they follow its share of the zone's traffic: runtimes.workloads.scaled_replicas).
    replicas: Literal["fixed", "weight"] = "fixed"

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        parts = [p for p in v.split("/") if p not in ("", ".")]
        if v.startswith("/") or ".." in parts or not parts:
            raise ValueError(f"{v!r} must be a directory inside the zone's git path (not its root)")
        return "/".join(parts)


RESERVED_ZONE_NAMES = {
    "mesh": "the mesh repo's and the mesh route's key among the zones",
    "global": "the fleet-wide scope of a metric",
}


class ZoneKind(str, enum.Enum):
    KUBERNETES = "kubernetes"
    VM = "vm"


def http_url(value: str) -> str:
    """An absolute http(s) URL with a host; anything else is refused (naming what it got)."""
    m = re.match(r"^https?://([^/?#\s]+)([/?#]\S*)?$", value)
    host = m.group(1).rsplit("@", 1)[-1] if m else ""
    if not m or not host or host.startswith(":"):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, pydantic.AfterValidator(http_url)]


class MetricProviderType(str, enum.Enum):
    """Flagger's MetricTemplate provider types (those marked supported have a client here)."""

    PROMETHEUS = "prometheus"
    DATADOG = "datadog"
    GRAPHITE = "graphite"
    INFLUXDB = "influxdb"
    CLOUDWATCH = "cloudwatch"
    NEWRELIC = "newrelic"
    DYNATRACE = "dynatrace"
    STACKDRIVER = "stackdriver"
    SPLUNK = "splunk"
    KEPTN = "keptn"
    EXTERNALMETRICS = "externalmetrics"


class SecretRef(Model):
    name: str


class MetricProvider(Model):
    """Flagger's ``MetricTemplate.spec.provider``. ``secretRef`` names a secret the hub reads from
    files (``<secretsDir>/<name>/<key>``, as a mounted Kubernetes Secret) or the environment
    (``FEDERATION_SECRET_<NAME>_<KEY>``); values are never logged."""

    type: MetricProviderType
    address: HttpUrl | None = None
    secret_ref: SecretRef | None = None
    region: str | None = None
    insecure_skip_verify: bool = False
    headers: dict[str, list[str]] | None = None


class Zone(Model):
    name: Name
    kind: ZoneKind
    git: GitSource
    prometheus: PrometheusSource
    ingress: Endpoint
    capacity: int = Field(default=1, ge=1, le=MAX_RELATIVE, description="relative share of canary traffic by default")
    description: str = ""
    kubeconfig: Kubeconfig | None = None
    flux: FluxRef | None = None
    hosts: list[Host] | None = Field(default=None, max_length=MAX_HOSTS)
    known_hosts: str | None = None
    identity_file: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_MAP)
    # Per zone, a MetricTemplate provider of the same type is overridden by this one's address,
    # secretRef, insecureSkipVerify and headers (a zone's own Datadog site or InfluxDB, say).
    metric_providers: list[MetricProvider] = Field(default_factory=list, max_length=MAX_LIST)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_ZONE_NAMES:
            raise ValueError(f"{v!r} is reserved ({RESERVED_ZONE_NAMES[v]}); give the zone another name")
        return v

    @model_validator(mode="after")
    def _per_kind(self) -> Zone:
        if self.kind is ZoneKind.KUBERNETES:
            if self.kubeconfig is None:
                raise ValueError("kind kubernetes needs kubeconfig (context, or inCluster: true)")
            if self.hosts or self.known_hosts:
                raise ValueError("hosts and knownHosts are for kind vm, not kubernetes")
        else:
            if not self.hosts:
                raise ValueError("kind vm needs hosts (at least one)")
            if not self.known_hosts:
                raise ValueError("kind vm needs knownHosts: SSH host keys are pinned, never trusted on first use")
            if self.kubeconfig is not None or self.flux is not None:
                raise ValueError("kubeconfig and flux are for kind kubernetes, not vm")
        return self


class MeshProvider(str, enum.Enum):
    KUMA = "kuma"
    GATEWAYAPI = "gatewayapi"
    SMI = "smi"
    ISTIO = "istio"
    ENVOY = "envoy"


class Edge(Model):
    """A hub-managed Envoy edge (provider envoy): where its RDS file lives and its admin port."""

    rds_path: str
    admin: Endpoint
    listener: Endpoint | None = None


class MeshApply(str, enum.Enum):
    GITOPS = "gitops"
    """The hub commits the rendered route to the mesh repo; Flux applies it on the global control
    plane; a step counts once that Kustomization reports the commit (needs kubeconfig)."""
    DIRECT = "direct"
    """For a mesh without GitOps: the hub commits the route (the record) and server-side applies it
    on the global control plane itself; a step counts once the objects carry it (needs kubeconfig)."""


class Mesh(Model):
    provider: MeshProvider
    git: GitSource
    name: str = "default"
    namespace: str = "default"
    edge: Edge | None = None
    router: str | None = None  # a renderer other than the provider's default: kuma-trafficroute, linkerd, smi-v1alpha1
    apply: MeshApply = MeshApply.GITOPS
    kubeconfig: Kubeconfig | None = None  # the mesh's global control plane cluster
    flux: FluxRef | None = None  # gitops: the Kustomization applying the mesh repo there (default name: mesh)

    @field_validator("git")
    @classmethod
    def _hub_writes_directly(cls, v: GitSource) -> GitSource:
        if v.pull_request:
            raise ValueError("pullRequest is for zone repos: the mesh repo is the hub's record of each step, "
                             "written as the route is applied")
        return v


class GlobalMetrics(Model):
    """One Prometheus-API endpoint (Thanos, Mimir) answering for every zone instead of each zone's own."""

    prometheus: PrometheusSource
    zone_label: str = "zone"


class MetricsConfig(Model):
    global_: GlobalMetrics | None = Field(default=None, alias="global")
    mesh: Literal["envoy", "kuma", "linkerd", "smi", "gatewayapi", "istio", "app"] | None = None
    # Where MetricTemplate secretRefs are read: <secretsDir>/<name>/<key> (a mounted Secret's layout);
    # FEDERATION_SECRET_<NAME>_<KEY> in the environment wins. Default: FEDERATION_SECRETS_DIR, else
    # /etc/federation/secrets.
    secrets_dir: str | None = None


class AlertProvider(Model):
    """Where notifications go (Flagger's AlertProvider, kept in the Fleet). URLs are secrets: given by
    environment variable or file, never inline."""

    name: str
    type: Literal["slack", "msteams", "discord", "generic"]
    url_env: str | None = None
    url_file: str | None = None
    channel: str | None = None
    username: str = "federation"
    hmac_secret_env: str | None = None  # generic: sign bodies (X-Federation-Signature: sha256=...)

    @model_validator(mode="after")
    def _url(self) -> AlertProvider:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("give exactly one of urlEnv, urlFile")
        return self


class Outbound(Model):
    """Where the hub may send webhooks, alerts and metric queries (see ``core.outbound``)."""

    allow: list[str] = Field(default_factory=list, max_length=MAX_LIST)

    @field_validator("allow")
    @classmethod
    def _entries(cls, v: list[str]) -> list[str]:
        for entry in v:
            problem = outbound.allow_entry_problem(entry)
            if problem is not None:
                raise ValueError(problem)
        return v


class FleetSpec(Model):
    zones: list[Zone] = Field(min_length=1, max_length=MAX_ZONES)
    mesh: Mesh
    outbound: Outbound | None = None
    metrics: MetricsConfig | None = None
    alert_providers: list[AlertProvider] = Field(default_factory=list, max_length=MAX_LIST)

    @field_validator("zones")
    @classmethod
    def _unique(cls, zones: list[Zone]) -> list[Zone]:
        seen: set[str] = set()
        for z in zones:
            if z.name in seen:
                raise ValueError(f"zone {z.name!r} is listed twice")
            seen.add(z.name)
        return zones


class Fleet(Model):
    api_version: Literal["federation.io/v1alpha1"]
    kind: Literal["Fleet"]
    metadata: Metadata
    spec: FleetSpec

    def zone(self, name: str) -> Zone:
        for z in self.spec.zones:
            if z.name == name:
                return z
        raise KeyError(name)

    @property
    def zone_names(self) -> list[str]:
        return [z.name for z in self.spec.zones]

    def outbound_policy(self) -> outbound.Policy:
        """The fleet's outbound policy: its allow list, and its own Envoys' admin endpoints."""
        admin: set[tuple[str, int]] = set()
        for z in self.spec.zones:
            if z.ingress.admin_port is not None:
                admin.add((z.ingress.address, z.ingress.admin_port))
        edge = self.spec.mesh.edge
        if edge is not None:
            admin.add((edge.admin.address, edge.admin.port))
            if edge.admin.admin_port is not None:
                admin.add((edge.admin.address, edge.admin.admin_port))
        allow = tuple(self.spec.outbound.allow) if self.spec.outbound is not None else ()
        return outbound.Policy(allow, frozenset(admin))


# ----------------------------------------------------------------------------- ZoneRelease
# A zone repo's ZoneRelease (humans own spec.versions, the hub edits spec.serving). A version's
# fields are those of every zone kind: VM zones read command, replicas, health and env (the agent
# checks them again, vm-agents/vmagent/manifests.py); Kubernetes zones read image, replicas, args,
# env, ports, probes, resources, progressDeadlineSeconds, serviceAccountName, shutdownDelaySeconds,
# or template (the team's Deployment file). Anything else is refused (a typo such as ``replica`` would silently run
# one instance): ``fedctl validate`` and the hub's step say which file and which field.


class ZonePort(Model):
    name: str = "http"
    container_port: int = Field(ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class ZoneProbe(Model):
    """An HTTP GET probe on a container port (the first one by default)."""

    path: str = "/healthz"
    port: int | str | None = None
    initial_delay_seconds: int = Field(default=0, ge=0)
    period_seconds: int = Field(default=5, ge=1)
    timeout_seconds: int = Field(default=1, ge=1)
    failure_threshold: int = Field(default=3, ge=1)


class ZoneProbes(Model):
    readiness: ZoneProbe | None = None
    liveness: ZoneProbe | None = None
    startup: ZoneProbe | None = None


class ZoneResources(Model):
    requests: dict[str, str | int] | None = None
    limits: dict[str, str | int] | None = None


class ZoneVersion(Model):
    """How one version runs in a zone (``spec.versions.<version>``)."""

    command: list[str] | None = Field(default=None, max_length=MAX_LIST)
    replicas: int = Field(default=1, ge=0, le=MAX_COUNT)
    health: str | None = None
    env: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=MAX_MAP)
    image: str | None = Field(default=None, min_length=1)
    template: str | None = Field(default=None, min_length=1)
    args: list[str] | None = Field(default=None, max_length=MAX_LIST)
    ports: list[ZonePort] | None = Field(default=None, max_length=MAX_LIST)
    probes: ZoneProbes | None = None
    resources: ZoneResources | None = None
    progress_deadline_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    service_account_name: str | None = None
    # How long a retired pod keeps serving after its deletion, before its SIGTERM (the container's
    # preStop sleep), while the zone's mesh routes away from it.
    shutdown_delay_seconds: int = Field(default=10, ge=0, le=3600)


class ZoneReleaseSpec(Model):
    service: Name
    versions: dict[Version, ZoneVersion] = Field(default_factory=dict, max_length=MAX_MAP)
    serving: dict[Version, Annotated[int, Field(ge=0, le=BASIS_POINTS)]] = Field(default_factory=dict,
                                                                                 max_length=MAX_MAP)


class ZoneRelease(Model):
    api_version: Literal["federation.io/v1alpha1"]
    kind: Literal["ZoneRelease"]
    metadata: Metadata
    spec: ZoneReleaseSpec


# ----------------------------------------------------------------------------- Canary


class StringMatch(Model):
    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "suffix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of exact, prefix, suffix, regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from exc
        return self


class Match(Model):
    headers: dict[str, StringMatch] | None = None
    query_params: dict[str, StringMatch] | None = None
    source_labels: dict[str, str] | None = None


class ThresholdRange(Model):
    min: Finite | None = None
    max: Finite | None = None

    @model_validator(mode="after")
    def _order(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class TemplateRef(Model):
    name: str
    namespace: str | None = None


class Scope(str, enum.Enum):
    GLOBAL = "global"
    ZONE = "zone"
    BOTH = "both"


class NoData(str, enum.Enum):
    FAIL = "fail"
    HOLD = "hold"


class Aggregate(str, enum.Enum):
    """How a custom query's per-zone values make the global figure (built-ins combine their
    counts and histogram buckets instead)."""

    WORST = "worst"
    """The zone furthest outside (or nearest the edge of) the threshold range: safe by default."""
    SUM = "sum"
    """Zones added up: for counts (errors, restarts), judged against a fleet-wide range."""
    MEAN = "mean"
    """Plain mean of the zones' values."""
    WEIGHTED_MEAN = "weighted-mean"
    """Mean weighted by each zone's requests in the window (the mesh's built-in request count)."""
    MIN = "min"
    MAX = "max"


class Slo(Model):
    """An error budget judged by multi-window, multi-burn-rate alerting (Google's SRE workbook,
    "Alerting on SLOs"): the error ratio of each window divided by the budget (1 - objective) is
    its burn rate; the check fails when every window burns faster than ``burnRate`` — the long
    window says enough budget went, the short one that it is still going. 14.4 over 1h and 5m
    spends 2% of a 30-day budget in an hour (the workbook's page)."""

    objective: float = Field(gt=0, lt=100, description="percent of requests that must succeed")
    windows: list[Duration] = Field(default_factory=lambda: ["5m", "1h"], min_length=1, max_length=4)
    burn_rate: float = Field(default=14.4, gt=0)


class MetricCheck(Model):
    name: str = Field(min_length=1, max_length=253)
    interval: Interval = "1m"
    threshold: Finite | None = None
    threshold_range: ThresholdRange | None = None
    query: str | None = None
    template_ref: TemplateRef | None = None
    template_variables: dict[str, str] | None = Field(default=None, max_length=MAX_MAP)
    # Ours:
    # A ratio of counts: both queries run against each zone's Prometheus; a zone's value is
    # numerator / denominator, the global one the numerators summed over the denominators summed
    # (aggregate sum of counts, then the ratio: never a mean of zone ratios).
    numerator: str | None = None
    denominator: str | None = None
    scope: Scope = Scope.BOTH
    no_data: NoData = NoData.FAIL
    compare: Literal["primary"] | None = None
    min_requests: int = Field(default=1, ge=0, le=10**12)
    aggregate: Aggregate = Aggregate.WORST
    # Evaluated and recorded (status, commit trailers, fedctl metrics, the API) but never failing
    # or holding a check: a new metric watched before it is trusted (Argo Rollouts' dryRun).
    dry_run: bool = False
    # A built-in error-budget check from the mesh's request counts (no query, no thresholdRange).
    slo: Slo | None = None

    @property
    def is_ratio(self) -> bool:
        return self.numerator is not None

    @model_validator(mode="after")
    def _source(self) -> MetricCheck:
        if self.query is not None and self.template_ref is not None:
            raise ValueError("give query or templateRef, not both")
        if (self.numerator is None) != (self.denominator is None):
            raise ValueError(f"metric {self.name!r}: numerator and denominator go together")
        if self.numerator is not None and self.denominator is not None:
            if self.query is not None or self.template_ref is not None or self.slo is not None:
                raise ValueError(f"metric {self.name!r}: numerator/denominator is the query: no query, templateRef "
                                 "or slo beside them")
            if self.compare is not None:
                raise ValueError(f"metric {self.name!r}: compare: primary is not supported with numerator/denominator")
            if "aggregate" in self.model_fields_set and self.aggregate is not Aggregate.SUM:
                raise ValueError(f"metric {self.name!r}: numerator/denominator are summed across zones before "
                                 f"dividing: aggregate must be sum (or omitted), not {self.aggregate.value!r}")
            if self.threshold_range is None and self.threshold is None:
                raise ValueError("give thresholdRange")
            querytemplate.check(self.numerator, self.name, self.template_variables)
            querytemplate.check(self.denominator, self.name, self.template_variables)
            return self
        if self.slo is not None:
            if self.query is not None or self.template_ref is not None or self.compare is not None:
                raise ValueError("slo is a built-in check from request counts: no query, templateRef or compare")
            if self.threshold_range is not None or self.threshold is not None:
                raise ValueError("slo is judged against its burnRate: no thresholdRange or threshold")
            if self.aggregate is not Aggregate.WORST:
                raise ValueError("slo combines zones from summed request counts: no aggregate")
            return self
        if self.query is None and self.template_ref is None and self.name not in BUILTIN_METRICS:
            raise ValueError(
                f"metric {self.name!r} is not built in ({', '.join(BUILTIN_METRICS)}): give query, templateRef or numerator/denominator"
            )
        if self.threshold_range is None and self.threshold is None and self.compare is None:
            raise ValueError("give thresholdRange (or compare: primary)")
        if self.aggregate is not Aggregate.WORST and self.query is None and self.template_ref is None:
            raise ValueError(f"aggregate {self.aggregate.value!r} is for custom queries: {self.name} is combined "
                             "across zones from summed counts or merged histogram buckets")
        if self.query is not None:
            querytemplate.check(self.query, self.name, self.template_variables)
        return self

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """(min, max) accepted; Flagger's deprecated ``threshold`` is a min for success rate, else a max;
        an ``slo`` check's value is a burn rate, at most ``burnRate``."""
        if self.slo is not None:
            return None, self.slo.burn_rate
        if self.threshold_range is not None:
            return self.threshold_range.min, self.threshold_range.max
        if self.threshold is None:
            return None, None
        if self.name == "request-success-rate":
            return self.threshold, None
        return None, self.threshold


class MetricTemplateSpec(Model):
    provider: MetricProvider
    query: str = Field(min_length=1)

    @model_validator(mode="after")
    def _per_provider(self) -> MetricTemplateSpec:
        if self.provider.type is MetricProviderType.SPLUNK and self.provider.address is None:
            raise ValueError("provider splunk needs an address (https://api.<realm>.signalfx.com), as in Flagger")
        if self.provider.type is MetricProviderType.KEPTN:
            parts = self.query.strip().lower().split("/")
            if len(parts) < 3 or parts[0] not in ("keptnmetric", "keptnmetrics", "analysis", "analyses"):
                raise ValueError(f"provider keptn: query {self.query.strip()[:60]!r} is not "
                                 "keptnmetric/<namespace>/<name>")
        return self


class MetricTemplate(Model):
    """Flagger's MetricTemplate (``flagger.app/v1beta1``), kept in the mesh repo's ``templates/``."""

    api_version: Literal["flagger.app/v1beta1", "flagger.app/v1alpha1"]
    kind: Literal["MetricTemplate"]
    metadata: Metadata
    spec: MetricTemplateSpec


class WebhookType(str, enum.Enum):
    """Flagger's webhook types, with Flagger's meaning."""

    CONFIRM_ROLLOUT = "confirm-rollout"
    """Before the canary gets anything; the rollout waits (phase Waiting) until it answers 2xx."""
    PRE_ROLLOUT = "pre-rollout"
    """Before traffic moves to the canary; a failure is a failed check."""
    ROLLOUT = "rollout"
    """On every analysis iteration before the metric checks (load tests); a failure is a failed check."""
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    """Right before each canary weight increase; the step holds until it answers 2xx."""
    CONFIRM_PROMOTION = "confirm-promotion"
    """Before promotion; WaitingPromotion until 2xx, metric checks keep running meanwhile."""
    POST_ROLLOUT = "post-rollout"
    """After promotion or rollback; a failure is only logged."""
    ROLLBACK = "rollback"
    """Asked while Progressing or Waiting; a 2xx answer rolls the canary back."""
    EVENT = "event"
    """Receives every event the rollout emits."""


class Webhook(Model):
    name: str = Field(min_length=1, max_length=253)
    type: WebhookType = WebhookType.ROLLOUT
    url: str = Field(max_length=2048)
    timeout: Duration = "60s"
    retries: int = Field(default=0, ge=0, le=100)
    mute_alert: bool = False
    disable_tls: bool = Field(default=False, alias="disableTLS")
    metadata: dict[str, str] | None = Field(default=None, max_length=MAX_MAP)

    @field_validator("type", mode="before")
    @classmethod
    def _empty_is_rollout(cls, v: Any) -> Any:
        return WebhookType.ROLLOUT if v == "" else v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        problem = outbound.url_problem(v)
        if problem is not None:
            raise ValueError(f"{outbound.redact(v)!r} {problem}")
        return v


class ProviderRef(Model):
    name: str
    namespace: str | None = None


class Alert(Model):
    name: str
    severity: Literal["", "info", "warn", "error"] = "info"
    provider_ref: ProviderRef


class SessionAffinity(Model):
    cookie_name: str
    primary_cookie_name: str | None = None
    domain: str | None = None
    http_only: bool | None = None
    max_age: int = Field(default=86400, ge=0, le=MAX_SECONDS * 52)
    partitioned: bool | None = None
    path: str | None = None
    same_site: Literal["Strict", "Lax", "None"] | None = None
    secure: bool | None = None


class Strategy(str, enum.Enum):
    CANARY = "canary"
    """Progressive weight steps (stepWeight+maxWeight, or stepWeights)."""
    AB = "ab-testing"
    """Matched requests go to the canary for ``iterations`` checks, then promotion."""
    BLUE_GREEN = "blue-green"
    """The canary gets no live traffic (or a mirror) for ``iterations`` checks, then a switch."""


class Analysis(Model):
    interval: Interval = "1m"
    iterations: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    threshold: int = Field(default=5, ge=1, le=MAX_COUNT)
    max_weight: Percent | None = None
    step_weight: Percent | None = None
    step_weights: list[Percent] | None = Field(default=None, max_length=MAX_LIST)
    step_weight_promotion: Percent | None = None
    mirror: bool = False
    mirror_weight: Percent | None = None
    primary_ready_threshold: int = Field(default=100, ge=0, le=100)
    canary_ready_threshold: int = Field(default=100, ge=0, le=100)
    match: list[Match] | None = Field(default=None, max_length=MAX_LIST)
    metrics: list[MetricCheck] = Field(default_factory=list, max_length=MAX_LIST)
    webhooks: list[Webhook] = Field(default_factory=list, max_length=MAX_LIST)
    alerts: list[Alert] = Field(default_factory=list, max_length=MAX_LIST)
    session_affinity: SessionAffinity | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Analysis:
        if self.step_weights is not None:
            if not self.step_weights:
                raise ValueError("stepWeights is empty")
            bps = [percent_to_bp(w) for w in self.step_weights]
            if any(bp < 1 for bp in bps):
                raise ValueError("stepWeights must be at least 0.01 (one basis point)")
            if any(b <= a for a, b in itertools.pairwise(bps)):
                raise ValueError(f"stepWeights must increase: {self.step_weights}")
        # Compared after conversion to basis points: a weight that rounds to 0 would never move.
        for field, value in (("stepWeight", self.step_weight), ("maxWeight", self.max_weight),
                             ("stepWeightPromotion", self.step_weight_promotion)):
            if value is not None and percent_to_bp(value) < 1:
                raise ValueError(f"{field} must be at least 0.01 (one basis point), got {value}")
        if self.match and self.iterations is None:
            raise ValueError("match (A/B testing) needs iterations")
        ladder = self.step_weight is not None or self.step_weights is not None
        if not ladder and self.iterations is None:
            raise ValueError("give stepWeight (with maxWeight), stepWeights, or iterations (A/B, blue/green)")
        if ladder and self.match:
            raise ValueError("match (A/B testing) cannot be combined with stepWeight/stepWeights")
        if self.session_affinity is not None and not ladder:
            raise ValueError("sessionAffinity needs a canary ladder (stepWeight or stepWeights)")
        names = [m.name for m in self.metrics]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"metric names must be unique: {sorted(dup)}")
        hooks = [h.name for h in self.webhooks]
        dup = {n for n in hooks if hooks.count(n) > 1}
        if dup:
            raise ValueError(f"webhook names must be unique: {sorted(dup)}")
        return self

    @property
    def strategy(self) -> Strategy:
        if self.step_weight is not None or self.step_weights is not None:
            return Strategy.CANARY
        return Strategy.AB if self.match else Strategy.BLUE_GREEN

    @property
    def interval_seconds(self) -> float:
        return durations.parse(self.interval)

    def hooks(self, kind: WebhookType) -> list[Webhook]:
        return [h for h in self.webhooks if h.type is kind]


class ServiceRef(Model):
    name: Name
    port: int = Field(default=80, ge=1, le=65535)
    target_port: int | str | None = None


class Placement(Model):
    version: Version
    zones: list[Name] = Field(min_length=1, max_length=MAX_ZONES)

    @field_validator("zones")
    @classmethod
    def _unique(cls, zones: list[str]) -> list[str]:
        if len(set(zones)) != len(zones):
            raise ValueError(f"zones listed twice: {zones}")
        return zones


class CanarySpec(Model):
    service: ServiceRef
    primary: Placement
    canary: Placement
    zone_weights: dict[str, Annotated[int, Field(ge=0, le=MAX_RELATIVE)]] | None = Field(default=None,
                                                                                    max_length=MAX_ZONES)
    progress_deadline_seconds: int = Field(default=600, ge=1, le=MAX_SECONDS)
    skip_analysis: bool = False
    suspend: bool = False
    analysis: Analysis
    # Digest of the canary version's definitions in the canary zones' repos (image, artifact, command,
    # env...), set by the hub after reading them: Flagger's pod-template checksum. Not a spec field.
    _checksum: str = PrivateAttr(default="")

    @property
    def checksum(self) -> str:
        return self._checksum

    def with_checksum(self, checksum: str) -> CanarySpec:
        self._checksum = checksum
        return self

    @model_validator(mode="after")
    def _coherent(self) -> CanarySpec:
        if self.primary.version == self.canary.version:
            # Subsets are (zone, version): the same version moved to other zones (VMs to clusters) is
            # a rollout like any other, as long as no subset is on both sides.
            both = [z for z in self.canary.zones if z in self.primary.zones]
            if both:
                raise ValueError(f"canary.version equals primary.version ({self.primary.version!r}) in zone(s) "
                                 f"{', '.join(both)}: a version can only move to zones it does not run in")
        if self.zone_weights is not None:
            extra = set(self.zone_weights) - set(self.canary.zones)
            if extra:
                raise ValueError(f"zoneWeights names zones that are not canary zones: {sorted(extra)}")
            if any(v < 0 for v in self.zone_weights.values()):
                raise ValueError("zoneWeights must not be negative")
            if sum(self.zone_weights.get(z, 0) for z in self.canary.zones) <= 0:
                raise ValueError("zoneWeights gives no canary zone any share")
        return self


class FederatedCanary(Model):
    api_version: Literal["federation.io/v1alpha1"]
    kind: Literal["FederatedCanary"]
    metadata: Metadata
    spec: CanarySpec

    @property
    def key(self) -> str:
        """The rollout id: namespace/name."""
        return f"{self.metadata.namespace}/{self.metadata.name}"


def check_against_fleet(canary: FederatedCanary, fleet: Fleet) -> list[tuple[str, str]]:
    """Cross-file problems as (field path, message): zones the fleet does not have, and the like."""
    problems: list[tuple[str, str]] = []
    known = set(fleet.zone_names)
    for side in ("primary", "canary"):
        placement: Placement = getattr(canary.spec, side)
        for i, z in enumerate(placement.zones):
            if z not in known:
                problems.append((f"spec.{side}.zones[{i}]", f"zone {z!r} is not in fleet {fleet.metadata.name!r} (has: {', '.join(sorted(known))})"))
    a = canary.spec.analysis
    provider = fleet.spec.mesh.provider
    if a.mirror and provider not in (MeshProvider.ISTIO, MeshProvider.GATEWAYAPI, MeshProvider.ENVOY, MeshProvider.KUMA):
        problems.append(("spec.analysis.mirror", f"mesh provider {provider.value} cannot mirror traffic"))
    if a.match and provider is MeshProvider.SMI:
        problems.append(("spec.analysis.match", "mesh provider smi cannot route by match (TrafficSplit has weights only)"))
    policy = fleet.outbound_policy()
    for i, hook in enumerate(a.webhooks):
        parts = urllib.parse.urlsplit(hook.url)
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue  # a name: checked when the hub resolves it, at each call
        why = policy.check(host, parts.port or (443 if parts.scheme == "https" else 80), [host])
        if why is not None:
            problems.append((f"spec.analysis.webhooks[{i}].url", f"refused by the outbound policy: {why}"))
    if a.session_affinity is not None and provider in (MeshProvider.SMI, MeshProvider.KUMA):
        problems.append(("spec.analysis.sessionAffinity", f"mesh provider {provider.value} cannot express cookie session affinity"))
    return problems


def check_templates(canary: FederatedCanary, queries: Mapping[str, str]) -> list[tuple[str, str]]:
    """Each metric's ``templateRef`` query (by template name) against the metric's
    ``templateVariables``: a variable the template uses and the metric does not give is a spec
    error of that metric. A template not found is left to the analysis (it says so as no data)."""
    problems: list[tuple[str, str]] = []
    for i, m in enumerate(canary.spec.analysis.metrics):
        if m.template_ref is None or m.template_ref.name not in queries:
            continue
        try:
            querytemplate.check(queries[m.template_ref.name], m.name, m.template_variables)
        except querytemplate.TemplateError as exc:
            problems.append((f"spec.analysis.metrics[{i}].templateVariables",
                             f"{exc} (MetricTemplate {m.template_ref.name!r})"))
    return problems
