"""A minimal S3-compatible sink for the benchmarks, run in a process of its own.

It speaks just enough S3 over HTTP/1.1 keep-alive for the clients the benchmarks compare:
PutObject, the multipart calls, HeadObject, CreateBucket/HeadBucket, DeleteObject. It checks no
signature and keeps only each object's size and ETag, never its bytes. Like a real store it
computes the MD5 of every body it receives (after undoing `aws-chunked` framing), so clients that
verify ETags are satisfied, and multipart ETags are `md5(part md5s)-N`. Like AWS S3, it checks an
`x-amz-checksum-crc32` header against the body (400 BadDigest when they differ) and returns it,
composite (`crc32(part crc32s)-N`) for a multipart upload created with that algorithm.

It is a raw `asyncio.BufferedProtocol` that receives into one reused 1 MiB buffer and hashes
straight from it, so the server costs about one MD5 pass per byte and does not hide client cost.
Running in its own process, it does not share the client's GIL.

    python benchmarks/s3sink.py --port 0    # prints its URL on the first line of stdout
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import re
import signal
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Protocol
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

_READ_SIZE = 1 << 20
_MAX_HEAD = 64 * 1024
_MAX_LINE = 4096
_MAX_XML_BODY = 16 << 20
_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
}
_XML = '<?xml version="1.0" encoding="UTF-8"?>\n'
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_QUOT = {'"': "&quot;"}
_PART_RE = re.compile(rb"<Part>(.*?)</Part>", re.DOTALL)
_PART_NUMBER_RE = re.compile(rb"<PartNumber>\s*(\d+)\s*</PartNumber>")
_ETAG_RE = re.compile(rb"<ETag>(.*?)</ETag>", re.DOTALL)


class _Consumer(Protocol):
    def update(self, data: memoryview) -> None: ...


class _Digest:
    """Counts and MD5-hashes a payload without keeping it, and CRC32s it when `crc32` is 0."""

    def __init__(self, crc32: int | None) -> None:
        self.md5 = hashlib.md5()
        self.size = 0
        self.crc32 = crc32

    def update(self, data: memoryview) -> None:
        self.md5.update(data)
        if self.crc32 is not None:
            self.crc32 = zlib.crc32(data, self.crc32)
        self.size += len(data)


class _Collect:
    """Keeps a small payload (the XML of CompleteMultipartUpload)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def update(self, data: memoryview) -> None:
        if len(self.data) + len(data) > _MAX_XML_BODY:
            raise _HTTPError(413, "EntityTooLarge", "request body too large for this sink")
        self.data += data


class _ChunkDecoder:
    """Undoes chunk framing, HTTP `chunked` or `aws-chunked` (same layout), into `consumer`.

    Chunk extensions (`;chunk-signature=...`) and trailers (`x-amz-checksum-*`) are skipped.
    """

    def __init__(self, consumer: _Consumer) -> None:
        self._consumer = consumer
        self._line = bytearray()
        self._remaining = 0
        self._in_data = False
        self._in_trailer = False
        self.done = False

    def update(self, data: memoryview) -> None:
        self.feed(data)

    def feed(self, data: memoryview) -> int:
        """Consumes up to the end of the framing; returns how many bytes of `data` it used."""
        pos = 0
        while pos < len(data) and not self.done:
            if self._in_data:
                n = min(self._remaining, len(data) - pos)
                self._consumer.update(data[pos : pos + n])
                pos += n
                self._remaining -= n
                if self._remaining == 0:
                    self._in_data = False
                continue
            line, pos = self._read_line(data, pos)
            if line is not None:
                self._on_line(line)
        return pos

    def _read_line(self, data: memoryview, pos: int) -> tuple[bytes | None, int]:
        window = bytes(data[pos : pos + _MAX_LINE])
        end = window.find(b"\n")
        if end < 0:
            self._line += window
            if len(self._line) > _MAX_LINE:
                raise _HTTPError(400, "IncompleteBody", "chunk framing line too long")
            return None, pos + len(window)
        line = bytes(self._line + window[:end]).rstrip(b"\r")
        self._line.clear()
        return line, pos + end + 1

    def _on_line(self, line: bytes) -> None:
        if self._in_trailer:
            self.done = not line
            return
        if not line:  # the CRLF that closes a chunk's data
            return
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise _HTTPError(400, "IncompleteBody", "bad chunk size line") from None
        if size == 0:
            self._in_trailer = True
        else:
            self._remaining = size
            self._in_data = True


class _HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(slots=True)
class _Object:
    size: int
    etag: str
    crc32: str | None = None
    last_modified: str = field(default_factory=lambda: formatdate(usegmt=True))


@dataclass(slots=True)
class _Part:
    size: int
    md5: bytes
    crc32: bytes | None


@dataclass(slots=True)
class _Upload:
    crc32: bool
    parts: dict[int, _Part] = field(default_factory=dict)


@dataclass(slots=True)
class _Store:
    objects: dict[str, _Object] = field(default_factory=dict)
    uploads: dict[str, _Upload] = field(default_factory=dict)


@dataclass(slots=True)
class _Request:
    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass(slots=True)
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _xml(status: int, root: str, **fields: str) -> _Response:
    inner = "".join(f"<{k}>{escape(v, _QUOT)}</{k}>" for k, v in fields.items())
    body = f'{_XML}<{root} xmlns="{_S3_NS}">{inner}</{root}>'.encode()
    return _Response(status, {"Content-Type": "application/xml"}, body)


def _error(status: int, code: str, message: str) -> _Response:
    body = f"{_XML}<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    return _Response(status, {"Content-Type": "application/xml"}, body.encode())


def _handle(store: _Store, req: _Request, body: _Digest | _Collect) -> _Response:
    """Answers one request whose body has been read in full."""
    if not req.key:
        if req.method in ("PUT", "HEAD"):
            return _Response(200, {"Location": f"/{req.bucket}"} if req.method == "PUT" else {})
        if req.method == "DELETE":
            return _Response(204)
        return _error(501, "NotImplemented", f"{req.method} on a bucket")
    name = f"{req.bucket}/{req.key}"
    upload_id = req.query.get("uploadId")
    if req.method == "PUT" and isinstance(body, _Digest):
        etag = f'"{body.md5.hexdigest()}"'
        headers = {"ETag": etag}
        crc32 = None if body.crc32 is None else body.crc32.to_bytes(4, "big")
        if crc32 is not None:
            headers["x-amz-checksum-crc32"] = _b64(crc32)
            if headers["x-amz-checksum-crc32"] != req.headers["x-amz-checksum-crc32"]:
                return _error(400, "BadDigest", "The CRC32 you specified did not match the body.")
        if upload_id is None:
            store.objects[name] = _Object(body.size, etag, headers.get("x-amz-checksum-crc32"))
        elif upload_id in store.uploads:
            part = _Part(body.size, body.md5.digest(), crc32)
            store.uploads[upload_id].parts[int(req.query["partNumber"])] = part
        else:
            return _error(404, "NoSuchUpload", upload_id)
        return _Response(200, headers)
    if req.method == "POST" and "uploads" in req.query:
        upload_id = uuid.uuid4().hex
        crc32 = req.headers.get("x-amz-checksum-algorithm", "").upper() == "CRC32"
        store.uploads[upload_id] = _Upload(crc32)
        return _xml(
            200, "InitiateMultipartUploadResult", Bucket=req.bucket, Key=req.key, UploadId=upload_id
        )
    if req.method == "POST" and upload_id is not None and isinstance(body, _Collect):
        return _complete(store, req, name, upload_id, bytes(body.data))
    if req.method == "DELETE":
        if upload_id is not None and store.uploads.pop(upload_id, None) is None:
            return _error(404, "NoSuchUpload", upload_id)
        if upload_id is None:
            store.objects.pop(name, None)
        return _Response(204)
    if req.method == "HEAD":
        obj = store.objects.get(name)
        if obj is None:
            return _Response(404, {"Content-Length": "0"})
        headers = {
            "Content-Length": str(obj.size),
            "ETag": obj.etag,
            "Last-Modified": obj.last_modified,
            "Content-Type": "application/octet-stream",
        }
        if obj.crc32 and req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            headers["x-amz-checksum-crc32"] = obj.crc32
        return _Response(200, headers)
    return _error(501, "NotImplemented", f"{req.method} {sorted(req.query)}")


def _complete(store: _Store, req: _Request, name: str, upload_id: str, xml: bytes) -> _Response:
    """CompleteMultipartUpload: the listed parts, in order, with their ETags checked."""
    upload = store.uploads.get(upload_id)
    if upload is None:
        return _error(404, "NoSuchUpload", upload_id)
    parts = upload.parts
    listed: list[tuple[int, str]] = []
    for part in _PART_RE.findall(xml):
        number_match, etag_match = _PART_NUMBER_RE.search(part), _ETAG_RE.search(part)
        if number_match is None or etag_match is None:
            return _error(400, "MalformedXML", "a Part without PartNumber or ETag")
        part_etag = etag_match[1].replace(b"&quot;", b"").strip(b'" ').decode()
        listed.append((int(number_match[1]), part_etag))
    if not listed:
        return _error(400, "MalformedXML", "no parts listed")
    digests, crc32s, size = [], [], 0
    for number, part_etag in listed:
        if number not in parts or parts[number].md5.hex() != part_etag:
            return _error(400, "InvalidPart", f"part {number}")
        size += parts[number].size
        digests.append(parts[number].md5)
        crc32s.append(parts[number].crc32 or b"")
    del store.uploads[upload_id]
    etag = f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'
    checksum = {}
    if upload.crc32:
        composite = zlib.crc32(b"".join(crc32s)).to_bytes(4, "big")
        checksum["ChecksumCRC32"] = f"{_b64(composite)}-{len(crc32s)}"
    store.objects[name] = _Object(size, etag, checksum.get("ChecksumCRC32"))
    return _xml(
        200,
        "CompleteMultipartUploadResult",
        Location=f"/{name}",
        Bucket=req.bucket,
        Key=req.key,
        ETag=etag,
        **checksum,
    )


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection: parses heads, streams bodies into a digest."""

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._view = memoryview(bytearray(_READ_SIZE))
        self._transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._request: _Request | None = None
        self._payload: _Digest | _Collect = _Collect()
        self._sink: _Consumer = self._payload
        self._framing: _ChunkDecoder | None = None
        self._remaining = 0
        self._close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        data = self._view[:nbytes]
        try:
            while data and self._transport is not None:
                data = self._feed_head(data) if self._request is None else self._feed_body(data)
        except _HTTPError as exc:
            self._fail(_error(exc.status, exc.code, exc.message))
        except (ValueError, KeyError) as exc:
            self._fail(_error(400, "InvalidRequest", repr(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def _feed_head(self, data: memoryview) -> memoryview:
        before = len(self._head)
        self._head += data[: _MAX_HEAD - before]
        end = self._head.find(b"\r\n\r\n", max(0, before - 3))
        if end < 0:
            if len(self._head) >= _MAX_HEAD:
                raise _HTTPError(431, "RequestHeaderSectionTooLarge", "request head too large")
            return data[len(data) :]
        head = self._head[:end].decode("latin-1")
        self._head.clear()
        self._start(head)
        return data[end + 4 - before :]

    def _start(self, head: str) -> None:
        request_line, *lines = head.split("\r\n")
        method, target, version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        path, _, query = target.partition("?")
        bucket, _, key = path.lstrip("/").partition("/")
        self._request = _Request(
            method.upper(),
            unquote(bucket),
            unquote(key),
            {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()},
            headers,
        )
        self._close_after = version == "HTTP/1.0" or headers.get("connection", "") == "close"
        crc32 = 0 if "x-amz-checksum-crc32" in headers else None
        self._payload = _Digest(crc32) if self._request.method == "PUT" else _Collect()
        self._sink = self._payload
        if "aws-chunked" in headers.get("content-encoding", "") or headers.get(
            "x-amz-content-sha256", ""
        ).startswith("STREAMING-"):
            self._sink = _ChunkDecoder(self._payload)
        self._framing = None
        self._remaining = 0
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._framing = _ChunkDecoder(self._sink)
        else:
            self._remaining = int(headers.get("content-length", "0"))
        if headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._framing is None and self._remaining == 0:
            self._finish()

    def _feed_body(self, data: memoryview) -> memoryview:
        if self._framing is not None:
            used = self._framing.feed(data)
            if self._framing.done:
                self._finish()
            return data[used:]
        used = min(self._remaining, len(data))
        self._sink.update(data[:used])
        self._remaining -= used
        if self._remaining == 0:
            self._finish()
        return data[used:]

    def _finish(self) -> None:
        request, self._request = self._request, None
        assert request is not None
        self._write(_handle(self._store, request, self._payload), request.method == "HEAD")

    def _fail(self, response: _Response) -> None:
        self._request = None
        self._close_after = True
        self._write(response, head_only=False)

    def _write(self, response: _Response, head_only: bool) -> None:
        if self._transport is None:
            return
        headers = {"Server": "s3sink"}
        if response.status != 204:
            headers["Content-Length"] = str(len(response.body))
        headers.update(response.headers)
        if self._close_after:
            headers["Connection"] = "close"
        lines = [f"HTTP/1.1 {response.status} {_REASONS[response.status]}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._transport.write(head if head_only else head + response.body)
        if self._close_after:
            self._transport.close()
            self._transport = None


async def serve(host: str, port: int) -> None:
    """Serves until SIGINT/SIGTERM, after printing the URL on stdout's first line."""
    loop = asyncio.get_running_loop()
    store = _Store()
    server = await loop.create_server(lambda: _Connection(store), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound_port = server.sockets[0].getsockname()[1]
    print(f"http://{host}:{bound_port}", flush=True)
    async with server:
        await stop.wait()


def spawn_server(argv: Sequence[str]) -> tuple[subprocess.Popen[str], str]:
    """Starts a server process that prints its URL first on stdout; returns it and the URL."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("http"):
            return proc, line.strip()
    stop_server(proc)
    raise RuntimeError(f"server {argv!r} exited without printing its URL")


def stop_server(proc: subprocess.Popen[str]) -> None:
    """Terminates a server process (killing it if it lingers) and reaps it."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def serving(argv: Sequence[str]) -> Iterator[str]:
    """Runs a server process (see `spawn_server`) for the block; yields its URL."""
    proc, url = spawn_server(argv)
    try:
        yield url
    finally:
        stop_server(proc)


def _sink_argv(host: str) -> list[str]:
    return [sys.executable, __file__, "--host", host, "--port", "0"]


def start_sink(host: str = "127.0.0.1") -> tuple[subprocess.Popen[str], str]:
    """Starts the sink in a child process on a free port; returns the process and its URL."""
    return spawn_server(_sink_argv(host))


@contextlib.contextmanager
def running_sink(host: str = "127.0.0.1") -> Iterator[str]:
    """Runs the sink in a child process for the block; yields its URL."""
    with serving(_sink_argv(host)) as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
