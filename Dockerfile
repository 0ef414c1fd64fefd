# The hub's image: `fedctl` (ENTRYPOINT) in a venv, with git and openssh-client (Git over SSH,
# agents over SSH) and gnupg (signed commits), running as a numeric non-root user.
#
#   docker build -t federation-hub:0.1.0 .                                   # any builder
#   make image                                                               # here: no registry,
#       a Debian rootfs from mmdebstrap as BASE, built by buildah (scripts/build-image)
#
# BASE must be a Debian-like image with python3 (>= 3.11, with venv and ensurepip) and apt.
# A TLS-intercepting proxy's CA, if pip needs one to reach PyPI, is passed as the build secret
# `pip-ca` (never stored in a layer):  --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE=python:3.11-slim

# ---------------------------------------------------------------------------- build: the wheels
FROM ${BASE} AS build
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is reused until the dependencies change.
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip-ca,required=false \
    set -eu; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    python3 -m venv /tmp/tools; \
    /tmp/tools/bin/pip install --no-cache-dir --disable-pip-version-check -q \
        "pip>=24" "build>=1.2" "setuptools>=77" wheel; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt; \
    /tmp/tools/bin/pip wheel --no-cache-dir --disable-pip-version-check -q --wheel-dir /wheels/deps \
        -r /tmp/requirements.txt
# Then the project's own wheel (no network: the build backend is already in the tools venv), and
# the venv the image runs, installed from the wheels.
COPY README.md ./
COPY federation ./federation
COPY vm-agents ./vm-agents
RUN set -eu; \
    /tmp/tools/bin/python -m build --wheel --no-isolation --outdir /wheels/project . >/dev/null; \
    python3 -m venv /opt/federation; \
    /opt/federation/bin/pip install --no-cache-dir --disable-pip-version-check -q --no-index \
        --find-links /wheels/deps /wheels/project/*.whl; \
    /opt/federation/bin/pip uninstall -y -q pip

# ---------------------------------------------------------------------------- runtime
FROM ${BASE} AS runtime
RUN set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends git openssh-client gnupg ca-certificates >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    groupadd --gid 10001 federation; \
    useradd --uid 10001 --gid 10001 --home-dir /home/federation --create-home --shell /usr/sbin/nologin federation

# The venv, made in the build stage from the wheels alone (offline, runtime dependencies only, no
# pip) at the same path and on the same base, so its interpreter link holds here. A COPY (not a
# bind mount of the build stage: buildah's layer cache ignores a mount's content and would serve an
# old layer for new sources).
COPY --from=build /opt/federation /opt/federation
RUN /opt/federation/bin/fedctl --version

ENV PATH=/opt/federation/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/federation \
    FEDERATION_STATE_DIR=/var/lib/federation
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/federation
# Last, so a new revision or date does not invalidate the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="federation-hub" \
      org.opencontainers.image.description="Progressive delivery across Kubernetes clusters and VMs: the hub (fedctl hub run)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/federation-io/federation"

WORKDIR /home/federation
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["fedctl"]
CMD ["--help"]
