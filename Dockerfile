# syntax=docker/dockerfile:1
# The gateway's image: one image for every process (web, worker, beat,
# migrate), chosen by the entrypoint's first argument (docker/entrypoint.sh).
#
#   docker build -t ai-gateway .
#   docker run --rm -p 8000:8000 -e GATEWAY_ENV=production ... ai-gateway web
#
# Two stages: `build` installs the dependencies into a virtualenv (with a
# compiler at hand for any dependency without a wheel), collects the static
# files and compiles the bytecode; `runtime` gets only the virtualenv and the
# application, runs as an unprivileged user and writes nothing outside /tmp
# and $GATEWAY_VAR_DIR, so it runs with a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The dependencies first, from pyproject.toml alone, so that a change in the
# application's code does not reinstall them.
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --upgrade pip \
    && pip install -r requirements.txt

# The application runs from its source tree (manage.py, templates, data
# files), not as an installed package.
WORKDIR /app
COPY . .

# collectstatic imports the settings: throwaway development secrets and a
# scratch var directory keep anything secret out of the image's layers.
RUN DJANGO_SECRET_KEY=build-only GATEWAY_ENCRYPTION_KEY=build-only \
    GATEWAY_VAR_DIR=/tmp/build-var GATEWAY_STATIC_ROOT=/app/static \
    python manage.py collectstatic --noinput -v 0 \
    && rm -rf /tmp/build-var /app/var \
    && mkdir /app/var \
    && chmod 0755 /app/docker/entrypoint.sh \
    && python -m compileall -q /app


FROM ${PYTHON_IMAGE} AS runtime

# tini reaps orphans and forwards signals; the gateway's processes handle
# SIGTERM themselves (graceful drain).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin gateway

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# var/ is the only directory of the image the gateway writes to (the chart
# mounts an emptyDir over it).
RUN chown gateway:gateway /app/var

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=gateway_project.settings \
    GATEWAY_STATIC_ROOT=/app/static \
    GATEWAY_VAR_DIR=/app/var \
    PORT=8000

WORKDIR /app
USER 10001:10001
EXPOSE 8000

ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["web"]
