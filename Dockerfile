# One image for the whole of warp-sync on Kubernetes (docs/DEPLOY.md): the Dagster code location
# (`dagster api grpc`), the run pods the Kubernetes run launcher starts from it, the receiver (gunicorn) and the
# migrations Job (`warp-sync db upgrade`). Dagster's webserver and daemon run the chart's own image.
#
# No HEALTHCHECK: Kubernetes ignores it, and one command could not be right for a code server, a run pod and a
# receiver alike. The probes live in the manifests (deploy/).

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: the wheel and a virtualenv holding it and its dependencies --------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# What the build reads, nothing else (.dockerignore keeps the rest of the checkout out of the context).
COPY pyproject.toml setup.py README.md ./
COPY sql/ sql/
COPY warp_sync_pipeline/ warp_sync_pipeline/
COPY webhook_receiver/ webhook_receiver/
COPY hubspot_sandbox/ hubspot_sandbox/
RUN python -m venv /opt/warp-sync \
    && /opt/warp-sync/bin/pip install --no-cache-dir pip==24.3.1 setuptools==75.6.0 wheel==0.45.1 \
    && /opt/warp-sync/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/warp-sync/bin/pip install --no-cache-dir /tmp/dist/warp_sync-0.1.0-py3-none-any.whl

# --- run: the virtualenv on the same slim base, no compilers, a user of its own ---------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/warp-sync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # Dagster's instance folder; the chart mounts its dagster.yaml here, and run pods keep their frames under
    # storage/ (an emptyDir: see docs/DEPLOY.md).
    DAGSTER_HOME=/var/lib/warp-sync/dagster-home \
    # Local state a command may write (it never holds a database here: WARP_DATABASE_URL points outside).
    WARP_STATE_DIR=/var/lib/warp-sync/state
RUN groupadd --system --gid 10001 warp-sync \
    && useradd --system --uid 10001 --gid warp-sync --home-dir /var/lib/warp-sync --no-create-home \
       --shell /usr/sbin/nologin warp-sync \
    && mkdir -p /var/lib/warp-sync/dagster-home/storage /var/lib/warp-sync/state \
    && chown -R warp-sync:warp-sync /var/lib/warp-sync \
    && chmod 0700 /var/lib/warp-sync/dagster-home /var/lib/warp-sync/state
COPY --from=build /opt/warp-sync /opt/warp-sync
WORKDIR /var/lib/warp-sync
USER 10001:10001
# 4000: the code server's gRPC port (the chart's default); 8000: the receiver.
EXPOSE 4000 8000
CMD ["warp-sync", "--help"]
