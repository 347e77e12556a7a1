# flashQ: the app server image (gunicorn, production settings), and the proxy image that
# deploy/compose.yaml runs in front of it.
#
#   docker build -t flashq:local .                        # the app (the last stage)
#   docker build --target proxy -t flashq-proxy:local .   # nginx + the same static files
#
# One image serves every role, by command: gunicorn (the default), `python manage.py
# qcluster` (the scheduler), `python manage.py migrate --noinput` (a one-shot). Every
# role runs as uid 10001 on a read-only root filesystem with a writable /tmp (gunicorn's
# worker heartbeat files and its metrics directory live there). Secrets are never in the
# image: give them at run time as files, NAME_FILE=/run/secrets/... (see deploy/).
#
# The base is pinned to an exact patch release of Python 3.11 (the version the project is
# developed and tested on) and of Debian (bookworm, like the development machines).
# Add its digest where a registry is reachable, and bump both together:
#   docker buildx imagetools inspect python:3.11.17-slim-bookworm   (the "Digest:" line)
#   FROM python:3.11.17-slim-bookworm@sha256:<that digest> AS base
# `python -m deploy.policy` accepts the tag alone or tag@digest, never `latest`.

# ---------------------------------------------------------------------------------------
# base: the one Python everything shares. The builder's virtual environment is copied
# into the runtime stage, so both must have the same interpreter at the same path.
FROM python:3.11.17-slim-bookworm AS base

# ---------------------------------------------------------------------------------------
# builder: compilers (for any dependency without a wheel for this platform), the
# virtual environment, the application with its byte code, and the static files.
FROM base AS builder

RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The runtime dependencies only (requirements.txt: exact pins), into a venv without pip
# or setuptools of its own: the base image's pip installs into it (--python).
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install -r /tmp/requirements.txt

# The application (.dockerignore keeps out tests, local state, caches and secrets).
WORKDIR /app
COPY . /app

# Static files, collected at build time into STATIC_ROOT inside the image: whitenoise
# serves them from there, compressed and with hashed names (the manifest storage of
# settings.production). Production settings refuse to load without strong secrets, so
# this one command gets throwaway random ones, generated inside this RUN's own shell:
# they are in no ENV or ARG, in no layer, and gone when the command ends. collectstatic
# opens no database connection, but the settings want a DATABASE_URL: a throwaway one.
# Byte code is compiled here too (unchecked-hash: valid whatever the files' times), since
# the running containers cannot write __pycache__ on their read-only filesystem.
RUN export DJANGO_SETTINGS_MODULE=flashq_project.settings.production \
           STATIC_ROOT=/app/staticfiles \
           SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
           TOKEN_PEPPER="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
           ENCRYPTION_KEYS="build:$(python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')" \
           AUDIT_CHAIN_KEY="build:$(python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')" \
           DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
 && /opt/venv/bin/python manage.py collectstatic --noinput -v 0 \
 && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /app

# ---------------------------------------------------------------------------------------
# proxy: nginx for deploy/compose.yaml, with the same build's static files at the path
# deploy/nginx/flashq.conf serves them from (its `location /static/`). The configuration
# and the TLS certificate are mounted at run time, never baked in.
FROM nginx:1.30.4-alpine3.24 AS proxy
RUN rm -f /etc/nginx/conf.d/default.conf
COPY --from=builder /app/staticfiles /srv/flashq/staticfiles

# ---------------------------------------------------------------------------------------
# runtime: the app. No compilers, no installer, nothing the app's user may change: the
# files belong to root, and uid 10001 can only read them.
FROM base AS runtime

LABEL org.opencontainers.image.title="flashQ" \
      org.opencontainers.image.description="Job queue over a REST API (gunicorn, Django)"

# DJANGO_SETTINGS_MODULE: manage.py defaults to the local settings, which write their own
# secrets under .flashq-dev/; every command in this image runs with production settings.
# GUNICORN_BIND: every interface, for a Kubernetes Service (compose narrows it to
# 127.0.0.1, where only the nginx beside it connects).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=flashq_project.settings.production \
    STATIC_ROOT=/app/staticfiles \
    GUNICORN_BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/flashq-metrics

# The app's user, and no installer left at run time: the venv never had pip, and the
# base image's own pip and setuptools go too (the app runs from the venv, which does not
# see them).
RUN groupadd --system --gid 10001 flashq \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin flashq \
 && /usr/local/bin/python -m pip uninstall --yes --no-cache-dir pip setuptools wheel

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app

USER 10001:10001
EXPOSE 8000

# Ready = the app answers and its database too (/readyz: 503 while the database is down).
# Host: localhost, because a deployment's ALLOWED_HOSTS names its public host (keep
# localhost in it too). Orchestrators use their own probes (deploy/k8s); compose turns
# this off for the scheduler and the migration, which serve no HTTP.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; r = u.Request('http://127.0.0.1:8000/readyz', headers={'Host': 'localhost'}); sys.exit(0 if u.urlopen(r, timeout=4).status == 200 else 1)"]

CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
