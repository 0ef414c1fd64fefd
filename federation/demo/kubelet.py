"""A local stand-in for a zone's kubelet and Deployment controller, for the local Kubernetes API
server (``demo.kubeapi``): plainly not Kubernetes, but what the hub reads of a Deployment.

``sync`` is one pass over the Deployments of a namespace: each runs ``spec.replicas`` pods of its
current pod template as local processes of the demo app (``fed-demo-app`` stands in for every image:
it runs with the pod's ``app``/``version`` labels and the container's env over the env its image bakes
in, from ``images``, this stand-in's registry: what a build is lives in its image), on a free port), probed on
the readiness probe's HTTP path at each pass (its ``timeoutSeconds``; unready after
``failureThreshold`` failures in a row, or at once when its process is gone; ``periodSeconds`` is not
modelled); pods of an older template go once the new ones are ready (a rolling update) and a deleted
Deployment's pods go. A pod that goes terminates as Kubernetes terminates it: out of its Service's
endpoints at once, its process still running through its ``preStop`` ``sleep``
(``lifecycle.preStop.sleep.seconds``), then SIGTERM (``reap``, at each pass). Then the Deployment's status is written as the
controller writes it: ``observedGeneration``, ``replicas``, ``updatedReplicas``, ``readyReplicas``,
``availableReplicas``, ``Available`` and ``Progressing`` (``NewReplicaSetAvailable``, or
``ProgressDeadlineExceeded`` once the template has not become ready within
``progressDeadlineSeconds``). ``endpoints`` gives a selector's ready pods (for a zone's ingress).
A pod whose process exits is restarted in place as the kubelet does (``restartPolicy: Always``): at
once the first time, then after a back-off doubling from ``backoff`` seconds up to 300 s
(CrashLoopBackOff); ``restarts`` is its restartCount, and ``restart_counts`` gives them per
Deployment. A build that exits at start thus never gets ready and runs into its progress deadline.
Not modelled: scheduling, resources, liveness probes.
Callers: tests, the demo.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from federation.core.errors import FederationError
from federation.demo.kubeapi import LocalKube
from federation.demo.procs import Proc, Supervisor

log = logging.getLogger("federation.demo.kubelet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Pod:
    deployment: str
    template: str  # the pod template's hash
    labels: dict[str, str]
    port: int
    path: str  # readiness probe path
    proc: Proc
    ready: bool = False
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0  # the container's restartCount
    down_since: float | None = None  # when its process was first seen exited
    failures: int = 0  # readiness probes failed in a row
    threshold: int = 3  # the probe's failureThreshold
    timeout: float = 1.0  # the probe's timeoutSeconds
    delay: float = 0.0  # the preStop sleep: how long it keeps running once it terminates
    terminating: float | None = None  # when it started terminating (deleted)


@dataclass
class Rollout:
    """Where a Deployment's current template stands."""

    template: str
    since: float  # when this template was first seen (its progress deadline counts from here)
    complete: bool = False


@dataclass
class LocalKubelet:
    kube: LocalKube
    namespace: str
    zone: str
    supervisor: Supervisor
    app: str  # the demo app's executable
    pods: list[Pod] = field(default_factory=list)
    rollouts: dict[str, Rollout] = field(default_factory=dict)
    clock: Any = time.monotonic
    images: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # image -> the ENV it bakes in
    backoff: float = 10.0  # seconds before the second restart of a crashing pod (doubling, 300 s at most)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(headers={"Connection": "close"}), repr=False)

    def _deployments(self) -> list[dict[str, Any]]:
        r = self.kube.request("GET", f"/apis/apps/v1/namespaces/{self.namespace}/deployments")
        if r.status_code != 200:
            raise FederationError(f"deployments in {self.namespace}: {r.status_code} {r.text[:200]}")
        return list(r.json().get("items") or [])

    def _start(self, name: str, template: str, spec: dict[str, Any]) -> Pod:
        labels = dict((spec.get("metadata") or {}).get("labels") or {})
        container = ((spec.get("spec") or {}).get("containers") or [{}])[0]
        # As a container runtime does: the image's own ENV, then the container's env over it.
        env = {**self.images.get(str(container.get("image", "")), {}),
               **{e["name"]: str(e.get("value", "")) for e in container.get("env") or []}}
        readiness = container.get("readinessProbe") or {}
        probe = readiness.get("httpGet") or {}
        pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
        port = _free_port()
        argv = [self.app, "--service", labels.get("app", name), "--version", labels.get("version", "v0"),
                "--zone", self.zone, "--port", str(port)]
        proc = self.supervisor.start(f"pod-{self.zone}-{name}-{template}-{port}", argv, env=env)
        return Pod(name, template, labels, port, str(probe.get("path") or "/healthz"), proc, argv=argv, env=env,
                   threshold=int(readiness.get("failureThreshold", 3)),
                   timeout=float(readiness.get("timeoutSeconds", 1)), delay=float(pre_stop.get("seconds", 0)))

    def _revive(self, pod: Pod) -> None:
        """Restart a pod's exited process once its back-off has passed (the kubelet's CrashLoopBackOff)."""
        if pod.proc.alive():
            return
        now = self.clock()
        if pod.down_since is None:
            pod.down_since = now
        delay = 0.0 if pod.restarts == 0 else min(self.backoff * 2 ** (pod.restarts - 1), 300.0)
        if now - pod.down_since < delay:
            return
        self.supervisor.stop(pod.proc)  # reaped, out of the supervisor's list
        pod.proc = self.supervisor.start(pod.proc.name, pod.argv, env=pod.env)
        pod.restarts += 1
        pod.down_since = None
        pod.ready, pod.failures = False, 0  # a restarted container is unready until its probe passes

    def restart_counts(self, deployment: str) -> list[int]:
        """The restartCount of each pod of ``deployment``."""
        return [p.restarts for p in self.pods if p.deployment == deployment and p.terminating is None]

    def _probe(self, pod: Pod) -> bool:
        """Probe ``pod`` once: whether it is ready now (unready after ``threshold`` failures in a
        row, or at once when its process is gone)."""
        if not pod.proc.alive():
            pod.failures = pod.threshold
            return False
        try:
            ok = self.http.get(f"http://127.0.0.1:{pod.port}{pod.path}", timeout=pod.timeout).status_code < 400
        except httpx.HTTPError:
            ok = False
        pod.failures = 0 if ok else pod.failures + 1
        return ok or (pod.ready and pod.failures < pod.threshold)

    def _terminate(self, pod: Pod) -> None:
        """A pod deleted: out of the endpoints now, stopped by ``reap`` after its preStop sleep."""
        if pod.terminating is None:
            pod.terminating = self.clock()
            pod.ready = False
            log.info("pod %s terminating (port %d, preStop sleep %gs)", pod.proc.name, pod.port, pod.delay)

    def reap(self) -> None:
        """Stop the terminating pods whose preStop sleep has passed (SIGTERM, then SIGKILL after 5 s)."""
        now = self.clock()
        for p in [p for p in self.pods if p.terminating is not None and now - p.terminating >= p.delay]:
            self._stop(p)

    def _stop(self, pod: Pod) -> None:
        self.supervisor.stop(pod.proc, grace=5.0)
        self.pods.remove(pod)
        log.info("pod %s stopped (port %d)", pod.proc.name, pod.port)

    def sync(self) -> None:
        """One pass: pods started, probed and stopped; every Deployment's status written."""
        seen = set()
        for d in self._deployments():
            name = d["metadata"]["name"]
            seen.add(name)
            spec = d.get("spec") or {}
            want = int(spec.get("replicas", 1))
            template = template_hash(spec.get("template") or {})
            ro = self.rollouts.get(name)
            if ro is None or ro.template != template:
                ro = self.rollouts[name] = Rollout(template, self.clock())
            mine = [p for p in self.pods if p.deployment == name and p.terminating is None]
            new = [p for p in mine if p.template == template]
            for p in new[want:]:
                self._terminate(p)
            new = new[:want]
            for _ in range(want - len(new)):
                new.append(self._start(name, template, spec.get("template") or {}))
                self.pods.append(new[-1])
            for p in new:
                self._revive(p)
                p.ready = self._probe(p)
            ready_new = sum(p.ready for p in new)
            old = [p for p in mine if p.template != template]
            if ready_new >= want:  # the new template is up: the old one goes
                for p in old:
                    self._terminate(p)
                old = []
            for p in old:
                self._revive(p)
                p.ready = self._probe(p)
            ro.complete = ro.complete or ready_new >= want
            self._status(d, want, new, old, ro)
        for p in [p for p in self.pods if p.deployment not in seen]:
            self._terminate(p)
        for name in [n for n in self.rollouts if n not in seen]:
            del self.rollouts[name]
        self.reap()

    def _status(self, d: dict[str, Any], want: int, new: list[Pod], old: list[Pod], ro: Rollout) -> None:
        ready = sum(p.ready for p in new + old)
        deadline = float((d.get("spec") or {}).get("progressDeadlineSeconds", 600))
        if ro.complete:
            progressing = ("True", "NewReplicaSetAvailable", "the pods of the current template are available")
        elif self.clock() - ro.since > deadline:
            progressing = ("False", "ProgressDeadlineExceeded",
                           f"the current template has not become ready in {deadline:g}s")
        else:
            progressing = ("True", "ReplicaSetUpdated", "starting the pods of the current template")
        available = ("True", "MinimumReplicasAvailable", "ready") if ready >= want else \
            ("False", "MinimumReplicasUnavailable", f"{ready}/{want} ready")

        def cond(t: str, c: tuple[str, str, str]) -> dict[str, Any]:
            return {"type": t, "status": c[0], "reason": c[1], "message": c[2], "lastUpdateTime": _now(),
                    "lastTransitionTime": _now()}

        old_status = d.get("status") or {}
        conds = {c.get("type"): c for c in old_status.get("conditions") or []}
        status = {"observedGeneration": d["metadata"]["generation"], "replicas": len(new) + len(old),
                  "updatedReplicas": len(new), "readyReplicas": ready, "availableReplicas": ready,
                  "unavailableReplicas": max(0, want - ready),
                  "conditions": [
                      conds["Available"] if (conds.get("Available") or {}).get("reason") == available[1]
                      else cond("Available", available),
                      conds["Progressing"] if (conds.get("Progressing") or {}).get("reason") == progressing[1]
                      else cond("Progressing", progressing)]}
        if {k: old_status.get(k) for k in status} == status:
            return
        name = d["metadata"]["name"]
        r = self.kube.request("PATCH", f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}/status",
                              {"status": status}, "application/merge-patch+json")
        if r.status_code >= 300 and r.status_code != 404:
            raise FederationError(f"deployment {self.namespace}/{name} status: {r.status_code} {r.text[:200]}")

    def endpoints(self, selector: dict[str, str]) -> list[int]:
        """Ports of the ready pods whose labels match ``selector`` (a Service's endpoints)."""
        return sorted(p.port for p in self.pods if p.ready and all(p.labels.get(k) == v for k, v in selector.items()))

    def stop(self) -> None:
        for p in list(self.pods):
            self._stop(p)
        self.http.close()
