"""Checkpoint uploads in the background, with a bound on how many wait on the local disk.

    uploader = Uploader(max_staged=1)
    uploader.submit("checkpoint-200", Path(".../checkpoint-200"), "s3://bucket/run/checkpoints/checkpoint-200")
    uploader.full()      # True while max_staged checkpoints are queued or uploading: the next save waits
    uploader.close()     # waits for every upload; raises UploadFailed naming each one that failed

One thread uploads the checkpoints in the order they were saved, so training goes on while the bucket
is slow. Each upload is tried ``attempts`` times (besides botocore's own retries of single requests);
a checkpoint that still fails is recorded, its local copy is kept, and :meth:`Uploader.close` raises
with its name and the last error: a failed upload is never dropped silently.

To S3 (``s3://``, KFP's ``minio://``) the files go through boto3's transfer manager (s3transfer: large
files in concurrent multipart parts); to any other URI through :func:`r1ov.data.storage.copy_tree`.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1ov.data import storage

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
ATTEMPTS = 3
RETRY_BACKOFF_S = 5.0  # before the second attempt; twice that before the third


class UploadFailed(RuntimeError):
    """Checkpoints that could not be uploaded after every attempt."""


def s3_client() -> Any:  # boto3 generates its client classes at run time
    """A boto3 S3 client for the endpoint and region ``r1ov.data.storage`` uses (R1OV_S3_ENDPOINT...)."""
    endpoint = next((os.environ[k] for k in storage.S3_ENDPOINT_ENV if os.environ.get(k)), None)
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"  # as storage._s3_filesystem reads a bare host
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _client(endpoint, region, os.environ.get("AWS_ACCESS_KEY_ID"))


@functools.cache
def _client(endpoint: str | None, region: str | None, _key_id: str | None) -> Any:
    """One client per endpoint, region and key (clients are thread-safe; building one reads botocore's
    service model, a CPU cost the training process would otherwise pay at every checkpoint)."""
    import boto3
    from botocore.config import Config

    # "standard" retries throttling and transient errors of each request with backoff (botocore's retry modes).
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def _bucket_key(uri: str) -> tuple[str, str]:
    rest = uri.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def upload_tree(local: Path, target: str) -> int:
    """Copy the directory ``local`` to ``target``; returns the bytes copied."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    if not target.startswith(("s3://", "minio://")):
        storage.copy_tree(str(local), target)
        return size
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    bucket, prefix = _bucket_key(target)
    # Parts of 64 MiB, 8 at a time: a multi-GB shard streams in parallel parts instead of one PUT.
    config = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=8)
    with create_transfer_manager(s3_client(), config) as manager:
        futures = [
            manager.upload(str(path), bucket, "/".join(filter(None, (prefix, path.relative_to(local).as_posix()))))
            for path in files
        ]
        for future in futures:
            future.result()  # the first failure raises; leaving the block waits for the rest
    return size


@dataclass
class _Job:
    name: str
    local: Path
    target: str
    then: Callable[[], None] | None  # after the files are in place (the completion marker, rotation)
    on_failure: Callable[[str], None] | None = None  # once, with the error, when the upload is given up


_STOP = object()


class Uploader:
    """One background thread uploading saved checkpoints in order; see the module docstring."""

    def __init__(
        self,
        max_staged: int = 1,
        *,
        attempts: int | None = None,
        backoff_s: float | None = None,
        copy: Callable[[Path, str], int] = upload_tree,
    ) -> None:
        if max_staged < 1:
            raise ValueError(f"max_staged must be at least 1, got {max_staged}")
        self.max_staged = max_staged
        self.attempts = ATTEMPTS if attempts is None else attempts
        self.backoff_s = RETRY_BACKOFF_S if backoff_s is None else backoff_s
        self.copy = copy
        self.failed: dict[str, str] = {}  # checkpoint name -> the last error
        self.done: list[str] = []
        self._staged: dict[str, Path] = {}  # queued or uploading, oldest first
        self._lock = threading.Condition()
        self._queue: queue.Queue = queue.Queue()
        # A daemon: a process that crashes does not hang on its uploads (the store only ever counts
        # checkpoints whose every part arrived). A normal end and SIGTERM wait in close().
        self._thread = threading.Thread(target=self._run, name="checkpoint-upload", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- the training loop's side

    def full(self) -> bool:
        with self._lock:
            return len(self._staged) >= self.max_staged

    def busy(self) -> bool:
        with self._lock:
            return bool(self._staged)

    def staged(self) -> set[str]:
        """Names of the checkpoints queued or uploading: local rotation must leave them."""
        with self._lock:
            return set(self._staged)

    def keep_locally(self) -> set[str]:
        """What local rotation must not delete: checkpoints still uploading and those that failed."""
        with self._lock:
            return set(self._staged) | set(self.failed)

    def submit(
        self,
        name: str,
        local: Path,
        target: str,
        then: Callable[[], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        """Queue ``local`` for upload to ``target`` and return at once (call :meth:`full` first to bound staging).

        ``then`` runs after the copy, inside the same attempt; where it raises :class:`UploadFailed` the
        upload is given up at once (a decided failure, such as another node's, is not retried).
        ``on_failure`` is called once with the error when the upload is given up.
        """
        with self._lock:
            self._staged[name] = local
        self._queue.put(_Job(name, local, target, then, on_failure))

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until nothing is staged; False if ``timeout_s`` passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._staged, timeout=timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Wait for every queued upload, stop the thread and raise :class:`UploadFailed` if any failed."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise UploadFailed(f"checkpoint uploads still running after {timeout_s:.0f} s: {sorted(self.staged())}")
        if self.failed:
            raise UploadFailed(
                "checkpoint upload failed after "
                f"{self.attempts} attempt(s): "
                + "; ".join(f"{name}: {error}" for name, error in self.failed.items())
                + " (the local copies are kept)"
            )

    # ------------------------------------------------------------- the thread

    def _run(self) -> None:
        while (job := self._queue.get()) is not _STOP:
            try:
                self._upload(job)
            finally:
                with self._lock:
                    self._staged.pop(job.name, None)
                    self._lock.notify_all()

    @staticmethod
    def _report(job: _Job, error: str) -> None:
        if job.on_failure is None:
            return
        try:
            job.on_failure(error)
        except Exception as exc:  # the store that failed the upload may refuse this too
            logger.warning("could not report the failed upload of %s (%s)", job.name, exc)

    def _upload(self, job: _Job) -> None:
        for attempt in range(1, self.attempts + 1):
            started = time.monotonic()
            try:
                size = self.copy(job.local, job.target)
                if job.then is not None:
                    job.then()
            except Exception as exc:  # any failure of the store: retried, then reported at the end
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if attempt == self.attempts or isinstance(exc, UploadFailed):
                    logger.error("upload of %s to %s failed (%s); giving up", job.name, job.target, error)
                    self.failed[job.name] = error
                    self._report(job, error)
                    return
                logger.warning(
                    "upload of %s failed (%s), attempt %d of %d; retrying in %.0f s",
                    job.name, error, attempt, self.attempts, self.backoff_s * attempt,
                )  # fmt: skip
                time.sleep(self.backoff_s * attempt)
                continue
            seconds = time.monotonic() - started
            logger.info(
                "uploaded %s to %s (%.1f MB in %.1f s)", job.name, job.target, size / 1e6, seconds
            )  # fmt: skip
            self.done.append(job.name)
            return
