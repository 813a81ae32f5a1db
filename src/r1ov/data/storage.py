"""URIs for data and models: a local path or ``s3://bucket/prefix``.

Every stage reads and writes through these helpers so that the same code runs on a laptop
(local files) and on a cluster (S3 or any S3-compatible store such as SeaweedFS or MinIO).
Writes are atomic: a reader never sees half a file, so a retried task either finds a
finished shard or none at all.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from pathlib import Path

import pyarrow.fs as pafs

S3_ENDPOINT_ENV = ("R1OV_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with '/' (local paths too, so names stay portable)."""
    if is_remote(uri):
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{posixpath.join(rest, *parts)}"
    return str(Path(uri.removeprefix("file://"), *parts))


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = next((os.environ[k] for k in S3_ENDPOINT_ENV if os.environ.get(k)), None)
    kwargs: dict = {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return the pyarrow filesystem for ``uri`` and the path inside it."""
    # KFP's default artifact store names MinIO buckets minio://; they speak S3.
    for scheme in ("s3://", "minio://"):
        if uri.startswith(scheme):
            return _s3_filesystem(), uri.removeprefix(scheme).rstrip("/")
    if is_remote(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).absolute())


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes:
    if not is_remote(uri):  # the OS directly: many small reads (cache entries) add up
        return local_path(uri).read_bytes()
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` atomically: a temporary sibling renamed into place (one PUT on S3)."""
    if not is_remote(uri):
        path = local_path(uri).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return
    fs, path = filesystem(uri)
    parent = posixpath.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)
    # An S3 PUT is atomic: the object appears whole or not at all.
    with fs.open_output_stream(path) as out:
        out.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Files directly under ``uri`` whose names end in ``suffix``, sorted, as URIs."""
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    names = sorted(
        posixpath.basename(i.path)
        for i in infos
        if i.type == pafs.FileType.File and i.path.endswith(suffix) and ".tmp-" not in i.path
    )
    return [join(uri, n) for n in names]


def delete(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_file(path)


def copy_tree(src_uri: str, dst_uri: str) -> None:
    """Copy a directory tree between any two URIs (checkpoints to and from S3)."""
    src_fs, src = filesystem(src_uri)
    dst_fs, dst = filesystem(dst_uri)
    dst_fs.create_dir(dst, recursive=True)
    pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)


def local_path(uri: str) -> Path:
    """The local path of a ``file://`` or plain URI; remote URIs are refused."""
    if is_remote(uri):
        raise ValueError(f"{uri!r} is not a local path; copy it locally first")
    return Path(uri.removeprefix("file://"))
