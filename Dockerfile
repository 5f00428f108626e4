# syntax=docker/dockerfile:1
#
# codexgw container image.
#
#   docker build -t codexgw .
#   docker run --rm -p 127.0.0.1:8080:8080 -e CODEXGW_API_KEY=... \
#     -v "$PWD/deploy/compose/codexgw.yaml:/etc/codexgw/codexgw.yaml:ro" codexgw
#
# The gateway listens on 0.0.0.0:8080 (CODEXGW_LISTEN), so the config must
# have an auth block (keys, or auth.enabled: false on purpose): without one
# it refuses to start. Config comes from the file CODEXGW_CONFIG names
# (mount it); secrets come from the environment through ${VAR} in it.
# SIGTERM drains in-flight streams for server.drain_timeout (30 s) and exits
# 0: give `docker stop -t` / stop_grace_period / terminationGracePeriodSeconds
# more than that. See docs/deployment.md.

# --- builder: install codexgw and its dependencies into a venv ------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip

WORKDIR /src
# Only what the package is built from (see .dockerignore): setup.cfg reads
# README.md for the long description, and twisted/plugins holds the plugin.
COPY pyproject.toml setup.cfg README.md ./
COPY codexgw ./codexgw
COPY twisted ./twisted
RUN /opt/venv/bin/pip install .

# --- runtime: the venv on a slim Python, as an unprivileged user -------------
FROM python:3.11-slim AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CODEXGW_CONFIG=/etc/codexgw/codexgw.yaml \
    CODEXGW_LISTEN=tcp:8080:interface=0.0.0.0

RUN groupadd --system --gid 10001 codexgw \
 && useradd --system --uid 10001 --gid codexgw --no-create-home \
      --home-dir /var/lib/codexgw --shell /usr/sbin/nologin codexgw

COPY --from=builder /opt/venv /opt/venv

# twistd finds plugins through twisted/plugins/dropin.cache; build it now, as
# root, so the unprivileged (and possibly read-only) runtime never tries to
# write it. Then check that twistd sees the plugin and the demo server imports.
RUN python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && twistd --help | grep -q codexgw \
 && python -c "import codexgw.demo.server"

# The working directory holds the SQLite store (store.path defaults to
# data/codexgw-responses.sqlite3, relative to it); mount a volume on
# /var/lib/codexgw/data to keep stored responses across containers.
WORKDIR /var/lib/codexgw
RUN mkdir -p /var/lib/codexgw/data /etc/codexgw \
 && chown -R codexgw:codexgw /var/lib/codexgw

USER 10001:10001

EXPOSE 8080

# No curl in slim: Python's urllib, which fails (exit 1) on anything but 2xx.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=2)"]

STOPSIGNAL SIGTERM

# -n: stay in the foreground; --pidfile=: write no pid file (read-only root).
# Arguments after the image name go to the plugin (--drain-timeout 30,
# --config FILE, --listen ENDPOINT).
ENTRYPOINT ["twistd", "-n", "--pidfile=", "--logger", "codexgw.obs.logs.jsonObserver", "codexgw"]
CMD []
