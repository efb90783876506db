"""The GitHub artifact backend against the strict fake artifact service (tests/fixtures/github.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chrono_ci.errors import ConfigError, ObjectNotFound, StorageError
from chrono_ci.storage.artifacts.media_types import is_zip, media_type_for
from chrono_ci.storage.artifacts.naming import FORBIDDEN_NAME_CHARACTERS, artifact_name_for, validate_artifact_name
from chrono_ci.storage.artifacts.store import ArtifactStorage
from chrono_ci.storage.base import CHUNK_SIZE
from tests.fixtures.github import (
    SERVICE_PREFIX,
    FakeArtifactService,
    FakeJob,
    make_artifact_storage,
    make_token,
    signed_download_url,
)
from tests.fixtures.official_client import OfficialClient

MiB = 1 << 20


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


class FailingSource(io.RawIOBase):
    """Yields `good` bytes, then raises `error`, as a dump that dies half-way does."""

    def __init__(self, good: int, error: BaseException) -> None:
        self._left = good
        self._error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise self._error
        n = min(size if size > 0 else self._left, self._left)
        self._left -= n
        return b"x" * n


class GeneratedStream(io.RawIOBase):
    """`total` pseudo-random bytes made on demand, hashed as they go; records how it was read."""

    def __init__(self, total: int) -> None:
        self._left = total
        self._rng = random.Random(42)
        self.sha256 = hashlib.sha256()
        self.largest_read = 0
        self.unbounded_reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            self.unbounded_reads += 1
            size = self._left
        self.largest_read = max(self.largest_read, size)
        chunk = self._rng.randbytes(min(size, self._left))
        self._left -= len(chunk)
        self.sha256.update(chunk)
        return chunk


def all_text(exc: BaseException) -> str:
    """Everything a person could see of an error: message, hint, and the whole printed chain."""
    hint = getattr(exc, "hint", "")
    return "\n".join([str(exc), hint, repr(exc), "".join(traceback.format_exception(exc))])


# An artifact as chrono-ci uploaded it before archives were uploaded as themselves: a zip holding one STORED
# postgres_backup_2026-11-20_02-00-00.sql.zst, made by that version's writer and kept as it was.
ZIP_FORM_ARTIFACT = Path(__file__).parent / "fixtures" / "data" / "zip-form-artifact.zip"
ZIP_FORM_MEMBER = "postgres_backup_2026-11-20_02-00-00.sql.zst"
ZIP_FORM_MEMBER_SHA256 = "1073ee7a518ab874d13eddc9e480e533d94fa019b80e66df0ed6d32e95b03112"


@pytest.fixture
def job(github_artifact_service: FakeArtifactService) -> FakeJob:
    return github_artifact_service.new_run()


@pytest.fixture
def make(github_artifact_service: FakeArtifactService, job: FakeJob, tmp_path: Path) -> Callable[..., ArtifactStorage]:
    spool = tmp_path / "spool"
    spool.mkdir()

    def factory(**options: Any) -> ArtifactStorage:
        options.setdefault("temp_dir", spool)
        return make_artifact_storage(github_artifact_service, options.pop("job", job), **options)

    return factory


# -- the whole sequence ------------------------------------------------------------------------------------------


def test_upload_download_list_stat_delete(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage], tmp_path: Path
) -> None:
    storage = make(block_size=256 << 10)
    data = payload(3 * MiB // 2)
    name = "postgres_backup_2026-11-25_02-00-00.sql.zst"

    info = storage.put(name, io.BytesIO(data), {"database": "app"})

    # The artifact is the archive itself: no zip around it, its digest the archive's sha256.
    artifact = github_artifact_service.artifact(job, name)
    assert artifact.data == data
    assert (artifact.version, artifact.mime_type, artifact.blob.content_type) == (
        7,
        "application/zstd",
        "application/zstd",
    )
    sha256 = hashlib.sha256(data).hexdigest()
    assert info.key == name
    assert info.size == len(data)
    assert info.metadata["database"] == "app"
    assert info.metadata["sha256"] == info.metadata["artifact_sha256"] == sha256
    assert info.metadata["artifact_id"] == str(artifact.database_id)
    assert info.metadata["artifact_url"] == (
        f"{github_artifact_service.url}/octo-org/octo-repo/actions/runs/{job.run_id}/artifacts/{artifact.database_id}"
    )

    with storage.open(name) as stream:
        assert stream.read(10) == data[:10]
        assert stream.read() == data[10:]
    assert list((tmp_path / "spool").iterdir()) == [], "the spooled download is gone once the stream is closed"

    stat = storage.stat(name)
    assert (stat.key, stat.size) == (name, len(data))
    assert stat.metadata["artifact_sha256"] == sha256
    assert stat.metadata["artifact_id"] == info.metadata["artifact_id"]
    assert stat.modified.tzinfo is not None
    assert [o.key for o in storage.list()] == [name]
    assert [o.key for o in storage.list("postgres_")] == [name]
    assert storage.list("other-") == []

    storage.delete(name)
    assert storage.list() == []
    with pytest.raises(ObjectNotFound):
        storage.stat(name)
    with pytest.raises(ObjectNotFound):
        storage.open(name)
    with pytest.raises(ObjectNotFound):
        storage.delete(name)


def test_requests_follow_the_toolkit_wire_format(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    data = payload(450_000)
    make(block_size=100_000).put("wire.sql.gz", io.BytesIO(data))

    (create,) = github_artifact_service.twirp_requests("CreateArtifact")
    assert create == {
        "workflow_run_backend_id": job.run_backend_id,
        "workflow_job_run_backend_id": job.job_backend_id,
        "name": "wire.sql.gz",
        "version": 7,
        "mime_type": "application/gzip",
    }, "snake_case names, version 7 with the media type, no default values, no expires_at without a retention"
    (finalize,) = github_artifact_service.twirp_requests("FinalizeArtifact")
    assert finalize == {
        "workflow_run_backend_id": job.run_backend_id,
        "workflow_job_run_backend_id": job.job_backend_id,
        "name": "wire.sql.gz",
        "size": str(len(data)),
        "hash": f"sha256:{hashlib.sha256(data).hexdigest()}",
    }

    blocks = github_artifact_service.blob_calls("PutBlock")
    assert len(blocks) == -(-len(data) // 100_000)
    assert all(call.size <= 100_000 for call in blocks)
    ids = [call.query["blockid"] for call in blocks]
    assert len(set(ids)) == len(ids)
    assert len({len(block_id) for block_id in ids}) == 1
    (commit,) = github_artifact_service.blob_calls("PutBlockList")
    assert commit.headers["x-ms-blob-content-type"] == "application/gzip"
    for call in [*blocks, commit]:
        assert call.headers.get("x-ms-version")
        assert "authorization" not in call.headers


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("postgres_backup_2026-11-25_02-00-00.sql.zst", "application/zstd"),
        ("postgres_backup_2026-11-25_02-00-00.sql.gz", "application/gzip"),
        ("postgres_backup_2026-11-25_02-00-00.sql.zst.age", "application/octet-stream"),
        ("postgres_backup_2026-11-25_02-00-00.sql", "application/octet-stream"),
        ("NIGHTLY.SQL.ZST", "application/zstd"),
        (".zst", "application/octet-stream"),
    ],
)
def test_each_archive_is_uploaded_with_its_media_type(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage], name: str,
    media_type: str,
) -> None:  # fmt: skip
    assert media_type_for(name) == media_type
    make().put(name, io.BytesIO(b"archive bytes"))
    artifact = github_artifact_service.artifact(job, name)
    assert (artifact.mime_type, artifact.blob.content_type) == (media_type, media_type)
    assert not is_zip(media_type, f"/blobs/{name}"), "the download clients would unzip it"


def test_a_bound_name_holds_one_archive_whatever_the_key(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    storage = make(name="nightly-backup.sql.zst")
    assert storage.url == "artifact://nightly-backup.sql.zst"
    info = storage.put("postgres_backup_2026-11-25_02-00-00.sql.zst", io.BytesIO(b"archive"))
    assert info.key == "nightly-backup.sql.zst"
    assert github_artifact_service.artifact(job, "nightly-backup.sql.zst").data == b"archive"
    # The backup reads its archive back by the archive's own name; both names reach the one artifact.
    for key in ("nightly-backup.sql.zst", "postgres_backup_2026-11-25_02-00-00.sql.zst"):
        with storage.open(key) as stream:
            assert stream.read() == b"archive"
        assert storage.stat(key).key == "nightly-backup.sql.zst"

    # One artifact per run: a second archive must not replace the first (`backup all` with several databases).
    with pytest.raises(StorageError, match="already holds an archive") as excinfo:
        storage.put("other.sql.zst", io.BytesIO(b"second database"))
    assert "artifact://" in excinfo.value.hint
    assert github_artifact_service.twirp_requests("DeleteArtifact") == []
    with storage.open("nightly-backup.sql.zst") as stream:
        assert stream.read() == b"archive"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (None, "a"),
        (None, "x" * 255),
        (None, "sauvegarde-été.sql.zst"),
        ("n", "a-much-longer-archive-name.sql.zst"),
        ("a-much-longer-artifact-name", "k"),
    ],
    ids=["one-char", "255-bytes", "non-ascii", "short-artifact-name", "long-artifact-name"],
)
def test_list_and_stat_give_the_archive_size_whatever_the_names(
    github_artifact_service: FakeArtifactService,
    job: FakeJob,
    make: Callable[..., ArtifactStorage],
    name: str | None,
    key: str,
) -> None:
    storage = make(name=name)
    data = payload(12_345)
    info = storage.put(key, io.BytesIO(data))
    artifact_name = name or key
    assert info.key == artifact_name
    assert storage.stat(artifact_name).size == len(data)
    assert [(o.key, o.size) for o in storage.list()] == [(artifact_name, len(data))]
    assert github_artifact_service.artifact(job, artifact_name).data == data


def test_archive_names_longer_than_a_file_name_are_refused(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage
) -> None:
    with pytest.raises(ConfigError, match="255 bytes"):
        artifact_storage.put("x" * 256, io.BytesIO(b"x"))
    assert github_artifact_service.calls == [], "refused before anything was sent"


# -- what users download, and artifacts in the zip form ------------------------------------------------------------


def _download(url: str) -> tuple[Any, bytes]:
    """A plain GET, as a browser does it: the response's headers and body."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        return response.headers, response.read()


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command is not installed")
def test_the_download_as_the_user_gets_it_is_the_archive_itself(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage], tmp_path: Path
) -> None:
    archive = tmp_path / "postgres_backup_2026-11-25_02-00-00.sql.zst"
    sql = b"--\n-- PostgreSQL database dump\n--\n" + b"COPY t (x) FROM stdin;\n" + b"1\n" * 50_000 + b"\\.\n"
    archive.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=sql, capture_output=True, check=True).stdout)
    with archive.open("rb") as source:
        info = make(block_size=64 << 10).put(archive.name, source)

    # What the browser, `gh run download` and actions/download-artifact@v5+ fetch: the signed URL, plain GET.
    url = signed_download_url(github_artifact_service, job, archive.name)
    headers, body = _download(url)
    content_type, disposition = headers["Content-Type"], headers["Content-Disposition"]
    assert content_type == "application/zstd", "not a zip type: the clients save it as it is"
    assert f"filename*=UTF-8''{archive.name}" in disposition
    saved = tmp_path / "download" / archive.name
    saved.parent.mkdir()
    saved.write_bytes(body)
    assert body == archive.read_bytes()
    assert hashlib.sha256(body).hexdigest() == info.metadata["sha256"]
    tested = subprocess.run(["zstd", "-t", str(saved)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stderr
    restored = subprocess.run(["zstd", "-d", "-c", str(saved)], capture_output=True, check=True).stdout
    assert restored == sql


def test_zip_form_artifacts_of_earlier_versions_are_still_read(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage], tmp_path: Path
) -> None:
    zip_bytes = ZIP_FORM_ARTIFACT.read_bytes()
    name = "chrono-ci-postgres-app-1001-1-backup-0a1b2c3d"  # the default name those versions gave
    github_artifact_service.seed_artifact(job, name, zip_bytes)
    storage = make()

    with storage.open(name) as stream:
        content = stream.read()
    assert hashlib.sha256(content).hexdigest() == ZIP_FORM_MEMBER_SHA256
    assert list((tmp_path / "spool").iterdir()) == []
    # The service knows the zip, not what is inside: list and stat describe the zip.
    stat = storage.stat(name)
    assert (stat.key, stat.size) == (name, len(zip_bytes))
    assert stat.metadata["artifact_sha256"] == hashlib.sha256(zip_bytes).hexdigest()
    assert [(o.key, o.size) for o in storage.list()] == [(name, len(zip_bytes))]
    # Its download is still a zip, which the clients unzip.
    url = signed_download_url(github_artifact_service, job, name)
    headers, body = _download(url)
    assert body == zip_bytes
    assert headers["Content-Type"] == "application/zip"
    assert f'filename="{name}.zip"' in headers["Content-Disposition"]


@pytest.mark.parametrize("content_type", ["application/zip", "zip"], ids=["toolkit-6", "toolkit-2"])
def test_zip_form_artifacts_of_the_official_clients_are_read(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage], content_type: str
) -> None:
    data = payload(50_000)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(ZIP_FORM_MEMBER, data)
    github_artifact_service.seed_artifact(
        job, "uploaded-by-upload-artifact", packed.getvalue(), content_type=content_type
    )
    with make().open("uploaded-by-upload-artifact") as stream:
        assert stream.read() == data


def test_a_raw_artifact_is_never_unzipped_whatever_its_bytes(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    zip_bytes = ZIP_FORM_ARTIFACT.read_bytes()
    storage = make()
    storage.put("looks-like-a.zip.age", io.BytesIO(zip_bytes))
    assert github_artifact_service.artifact(job, "looks-like-a.zip.age").blob.content_type == "application/octet-stream"
    with storage.open("looks-like-a.zip.age") as stream:
        assert stream.read() == zip_bytes, "the Content-Type decides, as for the official client, not the bytes"


def test_url_names_no_secret(artifact_storage: ArtifactStorage) -> None:
    assert artifact_storage.url == "artifact://*"


def test_empty_archive_round_trips(artifact_storage: ArtifactStorage) -> None:
    info = artifact_storage.put("empty.dump", io.BytesIO(b""))
    assert info.metadata["sha256"] == hashlib.sha256(b"").hexdigest()
    with artifact_storage.open("empty.dump") as stream:
        assert stream.read() == b""


def test_lower_camel_case_responses_are_understood(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage
) -> None:
    github_artifact_service.camel_case = True  # as act and Gitea answer
    info = artifact_storage.put("camel.dump", io.BytesIO(b"data" * 1000))
    assert info.metadata["artifact_id"]
    assert artifact_storage.stat("camel.dump").size == info.size
    with artifact_storage.open("camel.dump") as stream:
        assert stream.read() == b"data" * 1000
    artifact_storage.delete("camel.dump")


def test_results_url_path_is_ignored(github_artifact_service: FakeArtifactService, make: Callable[..., Any]) -> None:
    storage = make(results_url=f"{github_artifact_service.url}/some/tenant/path/")
    storage.put("origin.dump", io.BytesIO(b"x"))
    assert [o.key for o in storage.list()] == ["origin.dump"]


def test_artifact_of_another_job_in_the_run(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    make().put("from-job-a.dump", io.BytesIO(b"made by job a"))
    other_job = github_artifact_service.new_job(job.run_backend_id, run_id=job.run_id)
    other = make(job=other_job)
    assert [o.key for o in other.list()] == ["from-job-a.dump"]
    # The fake insists on the artifact's own job id here, as the toolkit sends it.
    with other.open("from-job-a.dump") as stream:
        assert stream.read() == b"made by job a"
    other.delete("from-job-a.dump")
    assert github_artifact_service.finalized(job.run_backend_id) == []


# -- retries -----------------------------------------------------------------------------------------------------


def test_twirp_calls_are_retried_on_503(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage
) -> None:
    github_artifact_service.fail_twirp("CreateArtifact", 2, status=503)
    github_artifact_service.fail_twirp("FinalizeArtifact", 1, status=502)
    github_artifact_service.fail_twirp("ListArtifacts", 4, status=429)
    artifact_storage.put("retried.dump", io.BytesIO(b"x" * 1000))
    assert [o.key for o in artifact_storage.list()] == ["retried.dump"]
    assert len(github_artifact_service.twirp_requests("CreateArtifact")) == 3
    assert len(github_artifact_service.twirp_requests("FinalizeArtifact")) == 2
    assert len(github_artifact_service.twirp_requests("ListArtifacts")) == 5


def test_unparsable_twirp_answers_are_retried(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage
) -> None:
    github_artifact_service.garble_twirp("CreateArtifact", 2)
    artifact_storage.put("garbled.dump", io.BytesIO(b"x"))
    assert len(github_artifact_service.twirp_requests("CreateArtifact")) == 3


@pytest.mark.parametrize("method", ["CreateArtifact", "FinalizeArtifact"])
def test_exhausted_retries_give_a_clear_error(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage, method: str
) -> None:
    github_artifact_service.fail_twirp(method, 5, status=503)
    with pytest.raises(StorageError) as excinfo:
        artifact_storage.put("doomed.dump", io.BytesIO(b"x" * 1000))
    assert method in excinfo.value.message
    assert "after 5 attempts" in excinfo.value.message
    assert "503" in excinfo.value.message
    assert excinfo.value.hint
    assert len(github_artifact_service.twirp_requests(method)) == 5
    assert artifact_storage.list() == []


def test_other_statuses_are_not_retried(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage
) -> None:
    github_artifact_service.fail_twirp("CreateArtifact", 5, status=400, message="bad request")
    with pytest.raises(StorageError, match="bad request"):
        artifact_storage.put("bad.dump", io.BytesIO(b"x"))
    assert len(github_artifact_service.twirp_requests("CreateArtifact")) == 1


def test_block_upload_is_retried_on_500(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    data = payload(600_000)
    github_artifact_service.fail_blocks(2, status=500)
    make(block_size=200_000).put("blocks.dump", io.BytesIO(data))
    assert github_artifact_service.artifact(job, "blocks.dump").data == data
    statuses = [call.status for call in github_artifact_service.blob_calls("PutBlock")]
    assert statuses[:3] == [500, 500, 201]


def test_block_upload_gives_up_and_finalizes_nothing(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage
) -> None:
    github_artifact_service.fail_blocks(5, status=503)
    with pytest.raises(StorageError) as excinfo:
        artifact_storage.put("blocked.dump", io.BytesIO(payload(300_000)))
    assert "after 5 attempts" in excinfo.value.message
    assert "Put Block" in excinfo.value.message
    assert github_artifact_service.twirp_requests("FinalizeArtifact") == []
    assert artifact_storage.list() == []


def test_download_is_retried(github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage) -> None:
    artifact_storage.put("dl.dump", io.BytesIO(b"payload"))
    github_artifact_service.fail_downloads(2, status=503)
    with artifact_storage.open("dl.dump") as stream:
        assert stream.read() == b"payload"
    assert [c.status for c in github_artifact_service.blob_calls("GetBlob")] == [503, 503, 200]


def test_an_artifact_damaged_after_upload_fails_its_digest(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    storage = make()
    storage.put("rot.sql.zst", io.BytesIO(payload(10_000)))
    blob = github_artifact_service.artifact(job, "rot.sql.zst").blob
    assert blob.committed is not None
    damaged = bytearray(blob.committed)
    damaged[len(damaged) // 2] ^= 0xFF
    blob.committed = bytes(damaged)
    with pytest.raises(StorageError, match=r"Downloading the artifact 'rot.sql.zst' failed: the download's sha256"):
        storage.open("rot.sql.zst")


def test_a_damaged_zip_form_artifact_reads_as_storage_error(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    damaged = bytearray(ZIP_FORM_ARTIFACT.read_bytes())
    damaged[damaged.index(b"\x28\xb5\x2f\xfd") + 60] ^= 0xFF  # inside the zstd frame: the zip's CRC catches it
    github_artifact_service.seed_artifact(job, "chrono-ci-postgres-app", bytes(damaged))
    with make().open("chrono-ci-postgres-app") as stream, pytest.raises(StorageError, match="damaged"):
        stream.read()


def test_unreachable_service_is_a_network_error_without_retries(make: Callable[..., ArtifactStorage]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = make(results_url=f"http://127.0.0.1:{port}/")
    with pytest.raises(StorageError) as excinfo:
        storage.list()
    assert "ECONNREFUSED" in excinfo.value.message
    assert "reach all GitHub endpoints" in excinfo.value.hint


# -- service errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 403])
def test_quota_error_is_explained_and_not_retried(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage, status: int
) -> None:
    github_artifact_service.quota_exceeded = True
    github_artifact_service.quota_status = status
    with pytest.raises(StorageError) as excinfo:
        artifact_storage.put("big.dump", io.BytesIO(b"x"))
    assert "quota" in excinfo.value.message
    assert "6-12 hours" in excinfo.value.hint
    assert len(github_artifact_service.twirp_requests("CreateArtifact")) == 1


def test_name_used_by_another_job_of_the_run_is_a_409_with_a_fix(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    make().put("same.dump", io.BytesIO(b"first"))
    matrix_leg = make(job=github_artifact_service.new_job(job.run_backend_id, run_id=job.run_id))
    source = GeneratedStream(1000)
    with pytest.raises(StorageError) as excinfo:
        matrix_leg.put("same.dump", source)  # type: ignore[arg-type]
    assert "already exists in this workflow run" in excinfo.value.message
    assert "unique per workflow run" in excinfo.value.hint
    assert "ARTIFACT_NAME" in excinfo.value.hint
    assert source.largest_read == 0, "refused before the dump is read"
    assert len(github_artifact_service.twirp_requests("CreateArtifact")) == 2, "a 409 is not retried"
    assert github_artifact_service.twirp_requests("DeleteArtifact") == [], "another job's artifact is kept"
    with make().open("same.dump") as stream:
        assert stream.read() == b"first"


def test_the_same_job_replaces_its_own_artifact(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    storage = make(block_size=64 << 10)
    storage.put("nightly.dump", io.BytesIO(b"first version"))
    second = payload(300_000, seed=2)
    info = storage.put("nightly.dump", io.BytesIO(second))
    assert info.size == len(second)
    assert [(o.key, o.size) for o in storage.list()] == [("nightly.dump", len(second))]
    with storage.open("nightly.dump") as stream:
        assert stream.read() == second
    assert len(github_artifact_service.twirp_requests("DeleteArtifact")) == 1


def test_a_failed_replacement_keeps_the_old_artifact(
    github_artifact_service: FakeArtifactService, make: Callable[..., ArtifactStorage]
) -> None:
    storage = make(block_size=64 << 10)
    storage.put("precious.dump", io.BytesIO(b"the good backup"))
    error = DumpFailed("cancelled")
    with pytest.raises(DumpFailed) as excinfo:
        storage.put("precious.dump", FailingSource(500_000, error))  # type: ignore[arg-type]
    assert excinfo.value is error
    assert github_artifact_service.twirp_requests("DeleteArtifact") == [], "spooled first, so nothing was lost"
    with storage.open("precious.dump") as stream:
        assert stream.read() == b"the good backup"


# -- names ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("char", sorted(FORBIDDEN_NAME_CHARACTERS), ids=lambda c: f"{ord(c):#04x}")
def test_forbidden_characters_are_refused(
    github_artifact_service: FakeArtifactService, artifact_storage: ArtifactStorage, char: str, make: Any
) -> None:
    name = f"db{char}backup"
    with pytest.raises(ConfigError) as excinfo:
        validate_artifact_name(name)
    assert FORBIDDEN_NAME_CHARACTERS[char] in excinfo.value.message
    for label in FORBIDDEN_NAME_CHARACTERS.values():
        assert label in excinfo.value.hint
    with pytest.raises(ConfigError):
        artifact_storage.put(name, io.BytesIO(b"x"))
    with pytest.raises(ConfigError):
        make(name=name)
    assert github_artifact_service.calls == [], "refused before anything is sent"


def test_empty_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty"):
        validate_artifact_name("")


@pytest.mark.parametrize(
    ("given", "extension", "kind", "expected"),
    [
        ("nightly", ".sql.zst", None, "nightly.sql.zst"),
        ("nightly.sql.zst", ".sql.zst", None, "nightly.sql.zst"),
        ("nightly", ".sql.zst", "postgres", "nightly-postgres.sql.zst"),
        ("nightly.sql.zst", ".sql.zst", "supabase", "nightly-supabase.sql.zst"),
        ("nightly.sql.gz", ".sql.zst", None, "nightly.sql.gz.sql.zst"),
        ("nightly.sql.zst", ".sql.zst.age", None, "nightly.sql.zst.sql.zst.age"),
        ("db", ".sql", "postgres", "db-postgres.sql"),
    ],
)
def test_a_given_artifact_name_ends_with_the_archives_extension(
    given: str, extension: str, kind: str | None, expected: str
) -> None:
    assert artifact_name_for(given, extension, kind) == expected
    validate_artifact_name(expected)


def test_artifact_names_longer_than_a_file_name_are_refused(job: FakeJob, make: Callable[..., ArtifactStorage]) -> None:
    validate_artifact_name("é" * 127 + ".")  # 255 bytes
    with pytest.raises(ConfigError, match="256 bytes long, more than 255") as excinfo:
        make(name="é" * 128)
    assert "file systems" in excinfo.value.hint
    assert excinfo.value.exit_code == 2


# -- configuration ---------------------------------------------------------------------------------------------


def test_missing_runtime_token_explains_run_steps_and_composite_actions() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ArtifactStorage.from_env(None, {"GITHUB_ACTIONS": "true"})
    assert "ACTIONS_RUNTIME_TOKEN" in excinfo.value.message
    assert "`run:` steps and composite actions" in excinfo.value.hint
    assert "uses: owner/chrono-ci@v1" in excinfo.value.hint


def test_missing_results_url_explains_too(job: FakeJob) -> None:
    with pytest.raises(ConfigError) as excinfo:
        ArtifactStorage.from_env(None, {"ACTIONS_RUNTIME_TOKEN": job.token})
    assert "ACTIONS_RESULTS_URL" in excinfo.value.message
    assert "composite actions" in excinfo.value.hint
    assert job.token not in all_text(excinfo.value)


@pytest.mark.parametrize(
    "token",
    [
        make_token("Actions.ExampleScope Actions.UploadArtifacts:1:2"),
        make_token("Actions.Results:only-the-run"),
        make_token(""),
        "not-a-jwt",
        "a.!!!.c",
    ],
    ids=["no-results-scope", "scope-without-job", "empty-scp", "not-a-jwt", "bad-payload"],
)
def test_token_without_results_scope_is_refused(github_artifact_service: FakeArtifactService, token: str) -> None:
    environ = {"ACTIONS_RUNTIME_TOKEN": token, "ACTIONS_RESULTS_URL": github_artifact_service.results_url}
    with pytest.raises(ConfigError) as excinfo:
        ArtifactStorage.from_env(None, environ)
    assert "Actions.Results" in excinfo.value.message
    assert token not in all_text(excinfo.value)


@pytest.mark.parametrize(
    ("server", "supported"),
    [
        ("https://github.com", True),
        ("https://octo-corp.ghe.com", True),
        ("http://github.localhost", True),
        ("http://127.0.0.1:8080", True),
        ("https://github.example.com", False),
        ("https://ghes.internal:8443", False),
    ],
)
def test_ghes_is_refused(
    github_artifact_service: FakeArtifactService, job: FakeJob, server: str, supported: bool
) -> None:
    environ = github_artifact_service.environ(job, GITHUB_SERVER_URL=server)
    if supported:
        ArtifactStorage.from_env(None, environ)
        return
    with pytest.raises(ConfigError) as excinfo:
        ArtifactStorage.from_env(None, environ)
    assert "Enterprise Server" in excinfo.value.message


@pytest.mark.parametrize("value", ["seven", "0", "-3"])
def test_bad_retention_setting_is_a_config_error(
    github_artifact_service: FakeArtifactService, job: FakeJob, value: str
) -> None:
    with pytest.raises(ConfigError, match="ARTIFACT_RETENTION_DAYS"):
        ArtifactStorage.from_env(None, github_artifact_service.environ(job, ARTIFACT_RETENTION_DAYS=value))


def test_retention_is_clamped_to_the_repository_maximum_with_a_warning(
    github_artifact_service: FakeArtifactService, job: FakeJob
) -> None:
    github_artifact_service.max_retention_days = 7  # the fake refuses an expiry beyond it
    warnings: list[str] = []
    environ = github_artifact_service.environ(job, ARTIFACT_RETENTION_DAYS="30", GITHUB_RETENTION_DAYS="7")
    storage = ArtifactStorage.from_env(None, environ, warn=warnings.append, mask=lambda v: None, log=lambda m: None)
    before = datetime.now(UTC)
    storage.put("kept.dump", io.BytesIO(b"x"))
    storage.put("kept-too.dump", io.BytesIO(b"x"))

    assert len(warnings) == 1
    assert "Using 7 instead of 30" in warnings[0]
    for request in github_artifact_service.twirp_requests("CreateArtifact"):
        expires_at = request["expires_at"]
        assert expires_at.endswith("Z")
        expires = datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs(expires - (before + timedelta(days=7))) < timedelta(minutes=5)


def test_retention_within_the_maximum_is_sent_unchanged(
    github_artifact_service: FakeArtifactService, make: Callable[..., ArtifactStorage]
) -> None:
    warnings: list[str] = []
    make(retention_days=3, max_retention_days=90, warn=warnings.append).put("short.dump", io.BytesIO(b"x"))
    assert warnings == []
    (request,) = github_artifact_service.twirp_requests("CreateArtifact")
    expires = datetime.strptime(request["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=3))) < timedelta(minutes=5)


# -- secrets -------------------------------------------------------------------------------------------------------


def test_signatures_are_masked_before_use(
    github_artifact_service: FakeArtifactService, make: Callable[..., ArtifactStorage]
) -> None:
    masked: list[tuple[str, int]] = []
    storage = make(mask=lambda value: masked.append((value, len(github_artifact_service.calls))))
    storage.put("masked.dump", io.BytesIO(payload(300_000)))

    upload_sig = github_artifact_service.blob_calls("PutBlock")[0].query["sig"]
    first_blob_call = next(i for i, c in enumerate(github_artifact_service.calls) if c.kind == "blob")
    masks = {value: when for value, when in masked}
    assert upload_sig in masks
    assert urllib.parse.quote(upload_sig, safe="") in masks, "the URL-encoded spelling too"
    assert masks[upload_sig] <= first_blob_call, "masked before the signed URL was used"

    with storage.open("masked.dump") as stream:
        stream.read()
    (download,) = github_artifact_service.blob_calls("GetBlob")
    assert download.query["sig"] in {value for value, _ in masked}


def test_default_mask_prints_the_workflow_command(
    github_artifact_service: FakeArtifactService, job: FakeJob, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = ArtifactStorage.from_env(None, github_artifact_service.environ(job), log=lambda m: None)
    storage.put("printed.dump", io.BytesIO(b"x"))
    (block,) = github_artifact_service.blob_calls("PutBlock")
    out = capsys.readouterr().out
    assert f"::add-mask::{block.query['sig']}" in out.splitlines()


def test_secrets_never_appear_in_errors(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    storage = make()
    # Servers that echo what they were sent: the token in a Twirp error, the signed URL in a blob error.
    github_artifact_service.fail_twirp("ListArtifacts", 5, status=503, message=f"token {job.token} rejected")
    with pytest.raises(StorageError) as twirp_error:
        storage.list()
    github_artifact_service.fail_twirp("CreateArtifact", 1, status=401, message=f"Bearer {job.token}")
    with pytest.raises(StorageError) as auth_error:
        storage.put("a.dump", io.BytesIO(b"x"))
    github_artifact_service.fail_blocks(5, status=500, message="failed PUT {url}")
    with pytest.raises(StorageError) as blob_error:
        storage.put("b.dump", io.BytesIO(b"x"))
    github_artifact_service.fail_blocks(1, status=403, message="{url}")
    with pytest.raises(StorageError) as forbidden_error:
        storage.put("c.dump", io.BytesIO(b"x"))

    secrets = github_artifact_service.secrets()
    assert job.token in secrets and len(secrets) > 3
    for excinfo in (twirp_error, auth_error, blob_error, forbidden_error):
        text = all_text(excinfo.value)
        leaked = [secret for secret in secrets if secret in text]
        assert leaked == [], text
    assert "***" in twirp_error.value.message, "an echoed token is redacted, the rest of the message kept"


def test_an_unusable_signed_url_is_reported_without_printing_it(
    github_artifact_service: FakeArtifactService, make: Callable[..., ArtifactStorage]
) -> None:
    storage = make()
    github_artifact_service.malformed_signed_urls = True
    with pytest.raises(StorageError, match="no usable upload URL") as excinfo:
        storage.put("odd.dump", io.BytesIO(b"x"))
    (blob,) = github_artifact_service.blobs.values()
    assert blob.write_sig not in all_text(excinfo.value)
    assert urllib.parse.quote(blob.write_sig, safe="") not in all_text(excinfo.value)


# -- all or nothing, bounded memory ----------------------------------------------------------------------------


class DumpFailed(Exception):
    pass


class Cancelled(BaseException):
    pass


@pytest.mark.parametrize("error", [DumpFailed("pg_dump exited with 1"), Cancelled()], ids=["exception", "base"])
def test_failing_source_commits_nothing(
    github_artifact_service: FakeArtifactService, make: Callable[..., ArtifactStorage], error: BaseException
) -> None:
    storage = make(block_size=256 << 10)
    with pytest.raises(type(error)) as excinfo:
        storage.put("partial.dump", FailingSource(3 * MiB, error))  # type: ignore[arg-type]
    assert excinfo.value is error, "the source's own exception propagates"
    assert len(github_artifact_service.blob_calls("PutBlock")) >= 8, "blocks were on their way"
    assert github_artifact_service.blob_calls("PutBlockList") == []
    assert github_artifact_service.twirp_requests("FinalizeArtifact") == []
    assert storage.list() == []
    with pytest.raises(ObjectNotFound):
        storage.stat("partial.dump")

    # The same name is free for the next attempt.
    storage.put("partial.dump", io.BytesIO(b"complete"))
    with storage.open("partial.dump") as stream:
        assert stream.read() == b"complete"


def test_64_mib_stream_is_uploaded_whole_in_bounded_pieces(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    source = GeneratedStream(64 * MiB)
    info = make(block_size=8 * MiB).put("big.dump", source)  # type: ignore[arg-type]

    assert source.unbounded_reads == 0 and source.largest_read <= CHUNK_SIZE
    content = github_artifact_service.artifact(job, "big.dump").data
    assert len(content) == 64 * MiB
    assert hashlib.sha256(content).hexdigest() == source.sha256.hexdigest() == info.metadata["sha256"]
    blocks = github_artifact_service.blob_calls("PutBlock")
    assert info.size == 64 * MiB
    assert len(blocks) == 8
    assert max(call.size for call in blocks) == 8 * MiB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from Linux's /proc")
def test_upload_memory_stays_bounded(github_artifact_service: FakeArtifactService, job: FakeJob) -> None:
    """A separate process uploads 64 MiB with the default 8 MiB blocks; its peak memory grows by far less."""
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's (the test process holds the fake's data).
    script = textwrap.dedent(
        """
        import io, json, os, sys
        from chrono_ci.storage.artifacts.store import ArtifactStorage

        def peak_kib():
            with open("/proc/self/status") as status:
                return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])

        class Source(io.RawIOBase):
            left = 64 << 20
            def readable(self): return True
            def read(self, size=-1):
                size = min(size, self.left); self.left -= size
                return os.urandom(size)

        env = json.loads(sys.argv[1])
        storage = ArtifactStorage.from_env(None, env, mask=lambda v: None, log=lambda m: None)
        before = peak_kib()
        info = storage.put("rss.dump", Source())
        print(json.dumps({"grown_kib": peak_kib() - before, "sha256": info.metadata["sha256"]}))
        """
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(github_artifact_service.environ(job))],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    content = github_artifact_service.artifact(job, "rss.dump").data
    assert len(content) == 64 * MiB
    assert hashlib.sha256(content).hexdigest() == report["sha256"]
    # About 2.5 blocks in practice; holding the archive would take at least 64 MiB.
    assert report["grown_kib"] < 40 * 1024, f"peak memory grew by {report['grown_kib']} KiB for a 64 MiB upload"


# -- the fake itself is strict -------------------------------------------------------------------------------------


def _raw(url: str, body: bytes, headers: dict[str, str], method: str = "POST") -> tuple[int, dict[str, Any] | bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def test_fake_rejects_what_the_toolkit_would_never_send(
    github_artifact_service: FakeArtifactService, job: FakeJob, make: Callable[..., ArtifactStorage]
) -> None:
    github_artifact_service.allow_violations = True
    service = github_artifact_service

    def twirp(method: str, body: dict[str, Any], token: str = job.token) -> int:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return _raw(f"{service.url}{SERVICE_PREFIX}{method}", json.dumps(body).encode(), headers)[0]

    ids = {"workflow_run_backend_id": job.run_backend_id, "workflow_job_run_backend_id": job.job_backend_id}
    camel = {"workflowRunBackendId": job.run_backend_id, "workflowJobRunBackendId": job.job_backend_id}
    assert twirp("CreateArtifact", {**camel, "name": "n", "version": 4}) == 400
    assert twirp("CreateArtifact", {**ids, "name": "n", "version": 4, "extra": 1}) == 400
    assert twirp("CreateArtifact", {**ids, "name": "n", "version": 4, "expires_at": "2030-01-01"}) == 400
    assert twirp("CreateArtifact", {**ids, "name": "", "version": 4}) == 400
    assert twirp("CreateArtifact", {**ids, "name": "n", "version": 4}, token=make_token("x")) == 401
    assert twirp("CreateArtifact", {**ids, "name": "a:b", "version": 4}) == 400
    other = {**ids, "workflow_job_run_backend_id": "someone-else"}
    assert twirp("CreateArtifact", {**other, "name": "n", "version": 4}) == 403
    assert twirp("FinalizeArtifact", {**ids, "name": "n", "size": 10, "hash": "sha256:00"}) == 400

    # A real upload, then tampering at each step of the blob protocol.
    assert twirp("CreateArtifact", {**ids, "name": "n", "version": 4}) == 200
    (artifact,) = [a for a in service.artifacts if a.name == "n"]
    base = f"{service.url}/blobs/{artifact.blob.blob_id}"
    sig = urllib.parse.quote(artifact.blob.write_sig, safe="")
    good = f"{base}?sv=2023-11-03&se=2099-01-01T00:00:00Z&sr=b&sp=cw&sig={sig}"
    block_a = "QUFBQQ=="  # base64 of AAAA
    put = {"x-ms-version": "2023-11-03"}
    assert _raw(f"{good}&comp=block&blockid={block_a}", b"data", {}, "PUT")[0] == 400  # no x-ms-version
    bad_sig = good.replace(sig, "forged")
    assert _raw(f"{bad_sig}&comp=block&blockid={block_a}", b"data", put, "PUT")[0] == 403
    bearer = {**put, "Authorization": f"Bearer {job.token}"}
    assert _raw(f"{good}&comp=block&blockid={block_a}", b"data", bearer, "PUT")[0] == 400
    assert _raw(f"{good}&comp=block&blockid=not*base64", b"data", put, "PUT")[0] == 400
    too_long = urllib.parse.quote(base64.b64encode(b"x" * 65).decode(), safe="")
    assert _raw(f"{good}&comp=block&blockid={too_long}", b"data", put, "PUT")[0] == 400
    assert _raw(f"{good}&comp=block&blockid={block_a}", b"data", put, "PUT")[0] == 201
    assert _raw(f"{good}&comp=block&blockid=QkJC", b"data", put, "PUT")[0] == 400  # another length
    unknown = b"<?xml version='1.0'?><BlockList><Latest>QkJCQg==</Latest></BlockList>"
    assert _raw(f"{good}&comp=blocklist", unknown, put, "PUT")[0] == 400
    listed = f"<?xml version='1.0'?><BlockList><Latest>{block_a}</Latest></BlockList>".encode()
    assert _raw(f"{good}&comp=blocklist", listed, put, "PUT")[0] == 201
    assert twirp("FinalizeArtifact", {**ids, "name": "n", "size": "4", "hash": "sha256:" + "0" * 64}) == 400
    assert twirp("FinalizeArtifact", {**ids, "name": "n", "size": "5", "hash": "sha256:" + "0" * 64}) == 400
    right = "sha256:" + hashlib.sha256(b"data").hexdigest()
    assert twirp("FinalizeArtifact", {**ids, "name": "n", "size": "4", "hash": right}) == 200
    assert twirp("CreateArtifact", {**ids, "name": "n", "version": 4}) == 409

    # Version 7 (6.x) always carries a media type, version 4 never; the commit sets the same type on the blob.
    assert twirp("CreateArtifact", {**ids, "name": "r", "version": 7}) == 400
    assert twirp("CreateArtifact", {**ids, "name": "r", "version": 7, "mime_type": "zstd"}) == 400
    assert twirp("CreateArtifact", {**ids, "name": "r", "version": 4, "mime_type": "application/zstd"}) == 400
    assert twirp("CreateArtifact", {**ids, "name": "r", "version": 5}) == 400
    before = len(service.violations)
    assert twirp("CreateArtifact", {**ids, "name": "r", "version": 7, "mime_type": "application/zstd"}) == 200
    (raw,) = [a for a in service.artifacts if a.name == "r"]
    raw_sig = urllib.parse.quote(raw.blob.write_sig, safe="")
    raw_url = f"{service.url}/blobs/{raw.blob.blob_id}?sv=2023-11-03&se=2099-01-01T00:00:00Z&sr=b&sp=cw&sig={raw_sig}"
    assert _raw(f"{raw_url}&comp=block&blockid={block_a}", b"data", put, "PUT")[0] == 201
    zipped = {**put, "x-ms-blob-content-type": "application/zip"}
    assert _raw(f"{raw_url}&comp=blocklist", listed, zipped, "PUT")[0] == 400
    assert service.violations[before:] == [
        "PutBlockList: x-ms-blob-content-type 'application/zip' is not CreateArtifact's mime_type 'application/zstd'"
    ]
    zstd = {**put, "x-ms-blob-content-type": "application/zstd"}
    assert _raw(f"{raw_url}&comp=blocklist", listed, zstd, "PUT")[0] == 201

    assert len(service.violations) >= 20


# -- the official client (@actions/artifact 6.x, on Node) ------------------------------------------------------------


def test_an_archive_the_official_client_uploads_as_itself_is_read_by_chrono_ci(
    github_artifact_service: FakeArtifactService,
    job: FakeJob,
    make: Callable[..., ArtifactStorage],
    official_artifact_client: OfficialClient,
    tmp_path: Path,
) -> None:
    archive = tmp_path / "postgres_backup_2026-11-25_02-00-00.sql.zst"
    data = payload(300_000, seed=11)
    archive.write_bytes(data)
    uploaded = official_artifact_client.run(
        github_artifact_service, job, "upload", str(archive), str(tmp_path), workspace=tmp_path
    )
    assert uploaded["size"] == len(data)
    assert uploaded["digest"] == hashlib.sha256(data).hexdigest()

    (create,) = github_artifact_service.twirp_requests("CreateArtifact")
    assert (create["name"], create["version"]) == (archive.name, 7), "skipArchive names it after the file"
    # The toolkit's table has no .zst: it falls back to octet-stream, which chrono-ci reads as raw all the same.
    assert create["mime_type"] == "application/octet-stream"

    storage = make()
    (listed,) = storage.list()
    assert (listed.key, listed.size) == (archive.name, len(data))
    assert listed.metadata["artifact_id"] == str(uploaded["id"])
    assert storage.stat(archive.name).metadata["artifact_sha256"] == uploaded["digest"]
    with storage.open(archive.name) as stream:
        assert stream.read() == data


def test_an_archive_chrono_ci_uploads_is_listed_and_downloaded_by_the_official_client(
    github_artifact_service: FakeArtifactService,
    job: FakeJob,
    make: Callable[..., ArtifactStorage],
    official_artifact_client: OfficialClient,
    tmp_path: Path,
) -> None:
    name = "postgres_backup_2026-11-25_02-00-00.sql.zst"
    data = payload(700_000, seed=12)
    info = make(block_size=256 << 10).put(name, io.BytesIO(data))

    (listed,) = official_artifact_client.run(github_artifact_service, job, "list", workspace=tmp_path)
    assert (listed["id"], listed["name"], listed["size"]) == (int(info.metadata["artifact_id"]), name, len(data))
    assert listed["digest"] == f"sha256:{info.metadata['sha256']}"

    target = tmp_path / "downloaded"
    result = official_artifact_client.run(
        github_artifact_service, job, "download", str(listed["id"]), str(target), listed["digest"], workspace=tmp_path
    )
    assert result["digestMismatch"] is False
    # Not unzipped, not wrapped: the archive itself, under the artifact's name.
    assert [path.name for path in target.iterdir()] == [name]
    assert (target / name).read_bytes() == data
    assert hashlib.sha256((target / name).read_bytes()).hexdigest() == info.metadata["sha256"]


def test_the_official_client_reports_a_digest_mismatch_on_a_damaged_artifact(
    github_artifact_service: FakeArtifactService,
    job: FakeJob,
    make: Callable[..., ArtifactStorage],
    official_artifact_client: OfficialClient,
    tmp_path: Path,
) -> None:
    """The digest chrono-ci sends at finalize is what the official client checks the download against."""
    info = make().put("damaged.sql.zst", io.BytesIO(payload(20_000)))
    blob = github_artifact_service.artifact(job, "damaged.sql.zst").blob
    assert blob.committed is not None
    blob.committed = blob.committed[:-1] + bytes([blob.committed[-1] ^ 0xFF])
    result = official_artifact_client.run(
        github_artifact_service,
        job,
        "download",
        info.metadata["artifact_id"],
        str(tmp_path / "downloaded"),
        f"sha256:{info.metadata['sha256']}",
        workspace=tmp_path,
    )
    assert result["digestMismatch"] is True
