"""A fault-injecting HTTP reverse proxy to put between an S3 client and moto's server.

The proxy forwards requests unchanged unless a rule picks a `Fault` for a request: then it
answers with an S3 error, resets the connection mid-body, stalls, flips a bit of the body,
corrupts the returned ETag or checksum, or drops the checksum. With `checks_crc32` set it
also checks an `x-amz-checksum-crc32` against the body it forwards, as AWS S3 does and moto
does not (400 BadDigest when they differ). It runs in its own thread with its own event loop,
so sync tests, async tests and child processes can all talk to it over real HTTP::

    with FaultProxy(moto_url) as proxy:
        proxy.set_rule(fail_first(2, SLOW_DOWN, op="PutObject"))
        ...  # point the client at proxy.url
        assert proxy.count(op="PutObject", outcome="error") == 2
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import ipaddress
import random
import re
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

S3Op = Literal[
    "PutObject",
    "UploadPart",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "HeadObject",
    "GetObject",
    "ListMultipartUploads",
    "CreateBucket",
    "Other",
]
FaultKind = Literal[
    "error", "reset", "stall", "flip_bit", "bad_etag", "bad_checksum", "no_checksum"
]
Outcome = Literal["forwarded", FaultKind]

_MAX_BODY = 1 << 34  # request bodies are buffered whole; S3 allows 5 GiB per request
_SHUTDOWN_TIMEOUT = 2.0  # seconds stop() waits for in-flight requests before cancelling them
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# aiohttp's client would add these on its own; the store must see the client's headers only.
_NO_AUTO_HEADERS = (hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE)
# Query parameters a plain GET/HEAD of an object may carry; any other one is a sub-resource.
_OBJECT_READ_PARAMS = frozenset({"partNumber", "versionId"})


@dataclass(frozen=True)
class RequestInfo:
    """What a rule sees of a request: decided on before the body is read.

    `path` and `query` are exactly as the client sent them (still percent-encoded), `headers`
    is case-insensitive, `body_length` is the declared Content-Length (None when absent),
    `seq` numbers the proxy's requests from 0 and `op` is a best-effort S3 operation name.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body_length: int | None
    seq: int
    op: S3Op


@dataclass(frozen=True)
class Fault:
    """One way for the proxy to misbehave on a request; build it with the class methods."""

    kind: FaultKind
    status: int = 0
    code: str = ""
    message: str = ""
    after_bytes: int | None = None
    seconds: float = 0.0
    then_forward: bool = False
    bit: int | None = None

    @classmethod
    def error(cls, status: int, code: str, message: str = "") -> Fault:
        """Answer with an S3 XML error and `status` without forwarding (the body is read)."""
        return cls("error", status=status, code=code, message=message or code)

    @classmethod
    def reset(cls, after_bytes: int | None = None) -> Fault:
        """Read `after_bytes` of the body (default: half of it), then abort with a TCP RST."""
        return cls("reset", after_bytes=after_bytes)

    @classmethod
    def stall(cls, seconds: float, *, then_forward: bool = False) -> Fault:
        """Read the body, wait `seconds`, then reset the connection or forward the request.

        A stall longer than the client's read timeout makes the client time out.
        """
        return cls("stall", seconds=seconds, then_forward=then_forward)

    @classmethod
    def flip_bit(cls, bit: int | None = None) -> Fault:
        """Flip one bit of the body before forwarding, so the store keeps damaged bytes.

        `bit` is an index into the body's bits, taken modulo its length; by default a bit in
        the middle byte. An empty body is forwarded as it is.
        """
        return cls("flip_bit", bit=bit)

    @classmethod
    def bad_etag(cls) -> Fault:
        """Forward the request, then replace the ETag response header with a wrong one."""
        return cls("bad_etag")

    @classmethod
    def bad_checksum(cls) -> Fault:
        """Forward the request, then make the `x-amz-checksum-*` headers and the `Checksum*`
        elements of the answer wrong (a multipart "-N" suffix is kept)."""
        return cls("bad_checksum")

    @classmethod
    def no_checksum(cls) -> Fault:
        """Forward the request, then drop the answer's checksums, as a store without
        checksum support would."""
        return cls("no_checksum")


INTERNAL_ERROR = Fault.error(500, "InternalError", "We encountered an internal error.")
SLOW_DOWN = Fault.error(503, "SlowDown", "Please reduce your request rate.")
SERVICE_UNAVAILABLE = Fault.error(503, "ServiceUnavailable", "Service is unable to handle it.")
REQUEST_TIMEOUT = Fault.error(
    400, "RequestTimeout", "Your socket connection to the server was not read from in time."
)
ACCESS_DENIED = Fault.error(403, "AccessDenied", "Access Denied")
NO_SUCH_BUCKET = Fault.error(404, "NoSuchBucket", "The specified bucket does not exist")
TRANSIENT_ERRORS = (INTERNAL_ERROR, SLOW_DOWN, SERVICE_UNAVAILABLE, REQUEST_TIMEOUT)
"""The canned errors an S3 client is expected to retry."""

Rule = Callable[[RequestInfo], Fault | None]
"""Picks the fault for a request, or None to forward it untouched."""


@dataclass(frozen=True)
class LoggedRequest:
    """A request the proxy saw and what it did with it.

    `status` is what the proxy answered (the store's status when forwarded), or None while in
    flight and when the connection was dropped instead.
    """

    info: RequestInfo
    outcome: Outcome
    status: int | None = None


def always(fault: Fault, op: S3Op | None = None) -> Rule:
    """A rule that injects `fault` into every request (of operation `op`, when given)."""

    def rule(info: RequestInfo) -> Fault | None:
        return fault if op is None or info.op == op else None

    return rule


def fail_first(n: int, fault: Fault, op: S3Op | None = None) -> Rule:
    """A rule that injects `fault` into the first `n` matching requests, then passes all."""
    lock = threading.Lock()
    left = n

    def rule(info: RequestInfo) -> Fault | None:
        nonlocal left
        if op is not None and info.op != op:
            return None
        with lock:
            if left <= 0:
                return None
            left -= 1
            return fault

    return rule


def random_faults(rate: float, faults: Sequence[Fault], seed: int, op: S3Op | None = None) -> Rule:
    """A rule that injects one of `faults` into each matching request with probability `rate`.

    The decisions depend only on the seed and on how many matching requests came before, so
    a soak run can be replayed; concurrent requests may take the decisions in another order.
    """
    rng = random.Random(seed)
    lock = threading.Lock()

    def rule(info: RequestInfo) -> Fault | None:
        if op is not None and info.op != op:
            return None
        with lock:
            return rng.choice(faults) if rng.random() < rate else None

    return rule


class FaultProxy:
    """A reverse proxy to `upstream` (like "http://127.0.0.1:PORT") that injects faults.

    `start()` serves on 127.0.0.1 on a free port from a thread of its own; `stop()` ends it
    (both also through `with`). Every request is logged in `requests`.
    """

    def __init__(self, upstream: str, *, checks_crc32: bool = False) -> None:
        self.upstream = upstream.rstrip("/")
        self.checks_crc32 = checks_crc32
        self._lock = threading.RLock()  # rules run under it, and may read the log
        self._rule: Rule | None = None
        self._log: dict[int, LoggedRequest] = {}
        self._next_seq = 0
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        """The proxy's endpoint URL, to give the S3 client as its endpoint."""
        if self._port is None:
            raise RuntimeError("the fault proxy is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def requests(self) -> list[LoggedRequest]:
        """A snapshot of the requests seen since the start or the last `reset()`."""
        with self._lock:
            return list(self._log.values())

    def count(
        self,
        op: S3Op | None = None,
        method: str | None = None,
        outcome: Outcome | None = None,
    ) -> int:
        """How many logged requests match all the given filters."""
        return sum(
            1
            for logged in self.requests
            if (op is None or logged.info.op == op)
            and (method is None or logged.info.method == method)
            and (outcome is None or logged.outcome == outcome)
        )

    def set_rule(self, rule: Rule | None) -> None:
        """Uses `rule` for the requests that arrive from now on; None forwards them all."""
        with self._lock:
            self._rule = rule

    def reset(self) -> None:
        """Clears the request log and the rule."""
        with self._lock:
            self._log.clear()
            self._rule = None

    def start(self) -> FaultProxy:
        """Starts serving and returns once the port is listening."""
        if self._thread is not None:
            raise RuntimeError("the fault proxy is already running")
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._port is None:
            self._thread.join()
            self._thread = None
            error, self._error = self._error, None
            raise RuntimeError("the fault proxy failed to start") from error
        return self

    def stop(self) -> None:
        """Stops serving: stalls end at once, other requests get a moment to finish."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        assert self._loop is not None
        assert self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join()
        self._port = None
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError("the fault proxy failed") from error

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        async with session:
            self._session = session
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                self._port = runner.addresses[0][1]
                self._ready.set()
                await self._stopping.wait()
            finally:
                await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            info = RequestInfo(
                method=request.method,
                path=path,
                query=query,
                headers=request.headers,
                body_length=request.content_length,
                seq=seq,
                op=_s3_operation(request.method, path, query, request.headers),
            )
            fault = self._rule(info) if self._rule is not None else None
            self._log[seq] = LoggedRequest(info, fault.kind if fault else "forwarded")

        if fault is not None and fault.kind == "reset":
            half = (info.body_length or 0) // 2
            await _read_prefix(request, half if fault.after_bytes is None else fault.after_bytes)
            return _drop(request)
        body = await request.read()
        if fault is None:
            return await self._forward(seq, request, body)
        if fault.kind == "error":
            self._set_status(seq, fault.status)
            return _error_response(fault.status, fault.code, fault.message)
        if fault.kind == "stall":
            if await self._sleep(fault.seconds) or not fault.then_forward:
                return _drop(request)
            return await self._forward(seq, request, body)
        if fault.kind == "flip_bit":
            return await self._forward(seq, request, _flip_bit(body, fault.bit))
        return await self._forward(seq, request, body, tamper=fault.kind)

    async def _forward(
        self, seq: int, request: web.Request, body: bytes, *, tamper: FaultKind | None = None
    ) -> web.Response:
        assert self._session is not None
        sent_crc32 = request.headers.get("x-amz-checksum-crc32")
        if self.checks_crc32 and sent_crc32 is not None and sent_crc32 != crc32_b64(body):
            self._set_status(seq, 400)
            return _error_response(400, "BadDigest", "The CRC32 you specified did not match.")
        url = URL(self.upstream + request.raw_path, encoded=True)
        try:
            async with self._session.request(
                request.method,
                url,
                headers=_end_to_end(request.headers, also_drop={"expect"}),
                data=io.BytesIO(body) if body else None,
                allow_redirects=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
            ) as upstream:
                payload = await upstream.read()
        except aiohttp.ClientError as exc:
            self._set_status(seq, 502)
            return _error_response(502, "BadGateway", f"upstream failed: {exc!r}")
        headers = _end_to_end(upstream.headers, also_drop={"content-length"})
        if request.method == hdrs.METH_HEAD and hdrs.CONTENT_LENGTH in upstream.headers:
            headers[hdrs.CONTENT_LENGTH] = upstream.headers[hdrs.CONTENT_LENGTH]
        if tamper == "bad_etag" and hdrs.ETAG in headers:
            headers[hdrs.ETAG] = _corrupt_etag(headers[hdrs.ETAG])
        if tamper in ("bad_checksum", "no_checksum"):
            headers, payload = _tamper_checksums(headers, payload, drop=tamper == "no_checksum")
        self._set_status(seq, upstream.status)
        return web.Response(
            status=upstream.status, reason=upstream.reason, headers=headers, body=payload
        )

    async def _sleep(self, seconds: float) -> bool:
        """Waits `seconds`; True when the proxy is stopping and the wait was cut short."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _set_status(self, seq: int, status: int) -> None:
        with self._lock:
            logged = self._log.get(seq)
            if logged is not None:
                self._log[seq] = replace(logged, status=status)


def _s3_operation(method: str, path: str, query: str, headers: Mapping[str, str]) -> S3Op:
    """Names the S3 operation of a request, for path-style and virtual-hosted-style URLs."""
    params = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    hostname = urlsplit("//" + headers.get(hdrs.HOST, "")).hostname or ""
    if _is_path_style_host(hostname):
        _, _, key = path.lstrip("/").partition("/")
    else:
        key = path.lstrip("/")
    if not key:
        if method == "PUT" and not params:
            return "CreateBucket"
        if method == "GET" and "uploads" in params:
            return "ListMultipartUploads"
        return "Other"
    copy = "x-amz-copy-source" in headers
    if "uploadId" in params:
        if method == "PUT" and not copy:
            return "UploadPart"
        if method == "POST":
            return "CompleteMultipartUpload"
        if method == "DELETE":
            return "AbortMultipartUpload"
        return "Other"
    if method == "POST" and "uploads" in params:
        return "CreateMultipartUpload"
    if method == "PUT" and not params and not copy:
        return "PutObject"
    if any(p not in _OBJECT_READ_PARAMS and not p.startswith("response-") for p in params):
        return "Other"
    if method == "GET":
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    return "Other"


def _is_path_style_host(hostname: str) -> bool:
    """True when the bucket cannot be in the host name: an IP address or plain localhost."""
    if hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def _end_to_end(headers: Mapping[str, str], also_drop: Iterable[str]) -> CIMultiDict[str]:
    """The headers without the hop-by-hop ones (and those named in Connection)."""
    drop = set(_HOP_BY_HOP).union(also_drop)
    drop.update(name.strip().lower() for name in headers.get(hdrs.CONNECTION, "").split(","))
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


def _error_response(status: int, code: str, message: str) -> web.Response:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return web.Response(status=status, body=xml.encode(), content_type="application/xml")


async def _read_prefix(request: web.Request, size: int) -> None:
    """Reads and discards at least `size` bytes of the body (fewer if it ends first)."""
    got = 0
    while got < size:
        chunk = await request.content.readany()
        if not chunk:
            return
        got += len(chunk)


def _drop(request: web.Request) -> web.Response:
    """Aborts the client connection with a TCP RST; the returned response is never sent."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response()


def _flip_bit(body: bytes, bit: int | None) -> bytes:
    if not body:
        return body
    index = len(body) * 4 if bit is None else bit % (len(body) * 8)
    damaged = bytearray(body)
    damaged[index // 8] ^= 1 << (index % 8)
    return bytes(damaged)


def crc32_b64(body: bytes) -> str:
    """The `x-amz-checksum-crc32` value of `body`: its CRC32, big-endian, in base64."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode("ascii")


_CHECKSUM_ELEMENT = re.compile(rb"<(Checksum(?:CRC32C?|CRC64NVME|SHA1|SHA256))>([^<]*)</\1>")


def _tamper_checksums(
    headers: CIMultiDict[str], payload: bytes, *, drop: bool
) -> tuple[CIMultiDict[str], bytes]:
    """The answer with its checksums (headers and XML elements) dropped or made wrong."""
    tampered: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower().startswith("x-amz-checksum-") and name.lower() != "x-amz-checksum-type":
            if drop:
                continue
            value = _wrong_checksum(value)
        tampered.add(name, value)

    def element(match: re.Match[bytes]) -> bytes:
        if drop:
            return b""
        wrong = _wrong_checksum(match[2].decode()).encode()
        return b"<%s>%s</%s>" % (match[1], wrong, match[1])

    return tampered, _CHECKSUM_ELEMENT.sub(element, payload)


def _wrong_checksum(value: str) -> str:
    """A well-formed base64 checksum that differs from `value`, keeping a "-N" suffix."""
    digest, dash, parts = value.partition("-")
    wrong = base64.b64encode(hashlib.md5(digest.encode()).digest()[:4]).decode("ascii")
    return f"{wrong}{dash}{parts}"


def _corrupt_etag(etag: str) -> str:
    """A well-formed ETag that differs from `etag`, keeping a multipart "-N" suffix."""
    digest = hashlib.md5(etag.encode()).hexdigest()
    _, dash, parts = etag.strip('"').partition("-")
    return f'"{digest}{dash}{parts}"'
