# syntax=docker/dockerfile:1
#
# runcomfy-gateway image: two stages, so the final image holds a virtualenv and nothing that
# built it.
#
#   docker build -t runcomfy-gateway .
#   docker run --rm -p 8080:8080 -v gateway-data:/data \
#       -e GATEWAY_UPSTREAM_TOKEN -e GATEWAY_ADMIN_TOKEN runcomfy-gateway
#
# Configuration comes only from GATEWAY_* environment variables (`runcomfy-gateway config
# --markdown` lists them). Secrets are never baked in: pass GATEWAY_UPSTREAM_TOKEN,
# GATEWAY_ADMIN_TOKEN and (with a password) GATEWAY_REDIS_URL at run time.
# Without GATEWAY_REDIS_URL the gateway starts its embedded Redis in /data (a volume).
#
# tests/test_deploy.py lints this file with hadolint, checks its invariants and replays the
# build stage's RUN steps in fresh virtualenvs, then starts the ENTRYPOINT/CMD with
# the ENV below and runs the HEALTHCHECK command against it.

# Debian 13 (trixie) with CPython 3.13, pinned by digest: a rebuilt tag cannot change the image
# under us. Bump tag and digest together (both stages share them).
FROM python:3.13.15-slim-trixie@sha256:ffb752e139c0a19692a43af8d8523b274222dd68eebad5d583b45c2201c6e30a AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# One command per RUN (tests/test_deploy.py replays them), hence the DL3059 exceptions.

# Build tools (pip, setuptools; hash-checked, see docs/deploy.md) live in /opt/build, which the
# runtime stage never copies.
RUN python -m venv /opt/build
COPY requirements-build.lock ./
RUN /opt/build/bin/pip install --no-cache-dir --require-hashes -r requirements-build.lock

# The runtime virtualenv has no pip: the build venv's pip installs into it (--python).
# Dependencies first (their layer survives code changes), hash-checked against the lock.
# hadolint ignore=DL3059
RUN python -m venv --without-pip /opt/venv
COPY requirements.lock ./
RUN /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes -r requirements.lock

# The gateway itself: a wheel built with the locked setuptools (no unpinned build dependency),
# then installed without dependencies.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir dist .
# hadolint ignore=DL3059
RUN /opt/build/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-deps --no-index --find-links dist runcomfy-gateway


FROM python:3.13.15-slim-trixie@sha256:ffb752e139c0a19692a43af8d8523b274222dd68eebad5d583b45c2201c6e30a AS runtime

LABEL org.opencontainers.image.title="runcomfy-gateway" \
      org.opencontainers.image.description="Caching, quota-enforcing proxy gateway in front of the RunComfy APIs" \
      org.opencontainers.image.licenses="Apache-2.0"

# No build tools at run time: the base image's own pip goes too. A fixed numeric non-root user,
# so Kubernetes' runAsNonRoot can verify it.
RUN python -m pip uninstall --yes --no-input pip \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --no-log-init --uid 10001 --gid gateway \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin gateway \
    && mkdir /data \
    && chown gateway:gateway /data

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_DATA_DIR=/data \
    GATEWAY_LOG_FORMAT=json

WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080

# No curl in slim images: the standard library asks /healthz (urlopen raises on non-2xx).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/healthz', timeout=4)"]

# SIGTERM starts the graceful drain: /readyz turns 503 and in-flight requests get
# GATEWAY_SHUTDOWN_GRACE_SECONDS (default 25 s) to finish; give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/runcomfy-gateway"]
CMD ["serve"]
