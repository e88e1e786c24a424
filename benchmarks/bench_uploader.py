"""Uploader benchmark: `recording_aio.AsyncUploader` against the S3 clients it competes with.

Uploads files of 1, 10 and 100 MiB one at a time, and a batch of 200 x 1 MiB at concurrency 8,
to one store (the `s3sink.py` process by default, or moto's server), with each client:

- boto3 `upload_file` (s3transfer, default TransferConfig), called in threads from the loop;
- aioboto3 `upload_file`;
- aiobotocore `put_object` of the file's bytes (read in a thread);
- obstore `put_async` of the file's path (Rust, path-style requests);
- a raw aiohttp PUT of the file's bytes, unsigned: the floor for a Python asyncio client;
- `recording_aio.AsyncUploader` (8 workers; each upload gets a hard link, as it deletes the file),
  twice: as it comes (`checksum="auto"`: it asks the store whether it checks CRC32, and the
  sink does, as AWS S3 and MinIO do, so CRC32; moto does not, so MD5 there), and with
  `checksum="md5"`, what it uses on a store that does not check CRC32. Its answer is logged.

Every client is opened once and warmed up with one upload. Throughput is the **median** of
`--repeats` timed runs, taken in turns across the clients so that drift on a shared machine
hits them all alike; CPU is the client process's user+system time per MiB (the store runs in
another process). Event-loop lag is sampled with `LoopLagMonitor` during 5 more, untimed
uploads of the largest file, so the monitor does not slow the timed runs; an idle event loop
in a process of its own is sampled at the same time (`BystanderLag`), which shows how much
lag the load on the machine alone causes any loop. "vs best Python peer"
compares with the fastest of boto3, aioboto3 and aiobotocore. What landed is checked (HEAD,
size) after each case.

The README figures come from (about 2 minutes on 2 cores):

    python benchmarks/bench_uploader.py

a smoke run (a few seconds) from `python benchmarks/bench_uploader.py --quick`, and the same
against moto's server from `--store moto`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import aiobotocore.session
import aiohttp
from _common import BystanderLag, LoopLagMonitor, cpu_time, print_table
from s3sink import running_sink, serving

MIB = 1 << 20
LAG_UPLOADS = 5  # uploads of the largest file sampled for loop lag
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
BUCKET = "bench"
PYTHON_PEERS = ("boto3", "aioboto3", "aiobotocore")
_MOTO_MAIN = """
import logging
import threading
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
threading.Event().wait()
"""


@dataclass(frozen=True)
class Target:
    """Where and how hard the clients upload."""

    url: str
    bucket: str
    concurrency: int


@dataclass(frozen=True)
class Case:
    """One workload: `count` files of `size` bytes, `concurrency` at a time."""

    title: str
    slug: str
    size: int
    count: int
    concurrency: int
    measure_lag: bool


@dataclass
class Result:
    """One client's figures for one case (`note` says why there are none)."""

    client: str
    mib_s: float | None = None
    cpu_ms_per_mib: float | None = None
    lag: dict[str, float] | None = None
    note: str = ""


class Client:
    """A peer: opened once per run, then asked to upload a file to a key, many times."""

    name = ""
    slug = ""

    async def open(self, stack: contextlib.AsyncExitStack, target: Target) -> None:
        """Creates the client; its cleanup goes on `stack`. ImportError means skip it."""
        raise NotImplementedError

    def stage(self, src: Path, count: int) -> list[Path]:
        """The files to give `count` uploads of `src`; made before the timer starts."""
        return [src] * count

    async def upload(self, path: Path, key: str) -> None:
        """Uploads the file at `path` to `key`, returning once the store has answered."""
        raise NotImplementedError


def _botocore_kwargs(target: Target) -> dict[str, Any]:
    return {"endpoint_url": target.url, "region_name": REGION, **CREDENTIALS}


class Boto3Client(Client):
    """boto3's managed transfer; sync, so run in a thread pool as asyncio code would."""

    name, slug = "boto3 upload_file (in threads)", "boto3"

    async def open(self, stack: contextlib.AsyncExitStack, target: Target) -> None:
        import boto3

        self._bucket = target.bucket
        self._s3 = boto3.client("s3", **_botocore_kwargs(target))
        stack.callback(self._s3.close)
        self._pool = stack.enter_context(ThreadPoolExecutor(max_workers=target.concurrency))

    async def upload(self, path: Path, key: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._s3.upload_file, str(path), self._bucket, key)


class Aioboto3Client(Client):
    name, slug = "aioboto3 upload_file", "aioboto3"

    async def open(self, stack: contextlib.AsyncExitStack, target: Target) -> None:
        try:
            import aioboto3
        except ImportError as exc:
            raise ImportError(f"{exc}; run it with nox -s bench-aioboto3") from exc

        self._bucket = target.bucket
        client = aioboto3.Session().client("s3", **_botocore_kwargs(target))
        self._s3 = await stack.enter_async_context(client)

    async def upload(self, path: Path, key: str) -> None:
        await self._s3.upload_file(str(path), self._bucket, key)


class AiobotocoreClient(Client):
    name, slug = "aiobotocore put_object", "aiobotocore"

    async def open(self, stack: contextlib.AsyncExitStack, target: Target) -> None:
        self._bucket = target.bucket
        client = aiobotocore.session.get_session().create_client("s3", **_botocore_kwargs(target))
        self._s3 = await stack.enter_async_context(client)

    async def upload(self, path: Path, key: str) -> None:
        body = await asyncio.to_thread(path.read_bytes)
        await self._s3.put_object(Bucket=self._bucket, Key=key, Body=body)


class ObstoreClient(Client):
    name, slug = "obstore put_async", "obstore"

    async def open(self, stack: contextlib.AsyncExitStack, target: Target) -> None:
        from obstore.store import S3Store

        self._store = S3Store(
            target.bucket,
            endpoint=target.url,
            region=REGION,
            access_key_id=CREDENTIALS["aws_access_key_id"],
            secret_access_key=CREDENTIALS["aws_secret_access_key"],
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    async def upload(self, path: Path, key: str) -> None:
        import obstore

        await obstore.put_async(self._store, key, path)


class RawAiohttpClient(Client):
    """An unsigned PUT of the bytes: what any Python asyncio client pays at least."""

    name, slug = "raw aiohttp PUT (floor)", "aiohttp"

    async def open(self, stack: contextlib.AsyncExitStack, target: Target) -> None:
        self._base = f"{target.url}/{target.bucket}"
        connector = aiohttp.TCPConnector(limit=target.concurrency)
        self._http = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))

    async def upload(self, path: Path, key: str) -> None:
        body = await asyncio.to_thread(path.read_bytes)
        async with self._http.put(f"{self._base}/{key}", data=body) as response:
            response.raise_for_status()
            await response.read()


class RecordingAioClient(Client):
    """The uploader under test; it deletes each file once the store has confirmed it."""

    name, slug = "recording_aio AsyncUploader (as it comes: auto)", "recording_aio"
    checksum = "auto"
    _links = itertools.count()

    async def open(self, stack: contextlib.AsyncExitStack, target: Target) -> None:
        from recording_aio import AsyncUploader, RecordingJob

        self._job = RecordingJob
        self._bucket = target.bucket
        uploader = AsyncUploader(
            endpoint_url=target.url,
            region_name=REGION,
            workers=target.concurrency,
            queue_size=256,
            checksum=self.checksum,
        )
        self._up = await stack.enter_async_context(uploader)

    def stage(self, src: Path, count: int) -> list[Path]:
        links = [src.with_name(f"{src.name}.{next(self._links)}") for _ in range(count)]
        for link in links:
            os.link(src, link)
        return links

    async def upload(self, path: Path, key: str) -> None:
        handle = await self._up.enqueue(self._job(local_path=path, bucket=self._bucket, key=key))
        await handle


class RecordingAioMd5Client(RecordingAioClient):
    """The uploader with MD5, the proof it uses on a store that does not check CRC32."""

    name, slug = "recording_aio AsyncUploader (MD5)", "recording_aio_md5"
    checksum = "md5"


CLIENTS: tuple[type[Client], ...] = (
    Boto3Client,
    Aioboto3Client,
    AiobotocoreClient,
    ObstoreClient,
    RawAiohttpClient,
    RecordingAioClient,
    RecordingAioMd5Client,
)


async def _run_bounded(
    upload: Callable[[Path, str], Awaitable[None]], jobs: list[tuple[Path, str]], limit: int
) -> None:
    """Runs the uploads with at most `limit` in flight."""
    pending = iter(jobs)

    async def worker() -> None:
        for path, key in pending:
            await upload(path, key)

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(limit, len(jobs))):
            tg.create_task(worker())


def _failure(exc: BaseException) -> str:
    """The note for a client that could not be imported or failed."""
    if isinstance(exc, ImportError):
        return f"skipped: {exc}"
    return f"failed: {type(exc).__name__}: {exc}"


class Bench:
    """Runs the cases with every client, repeats interleaved so that drift hits all alike.

    A client that cannot be imported is skipped and one that fails is dropped, each with a
    note in its rows: one broken peer does not end the run.
    """

    def __init__(self, target: Target, checker: Any, repeats: int) -> None:
        self.target = target
        self.checker = checker
        self.repeats = repeats
        self.notes: dict[str, str] = {}

    async def open(
        self, stack: contextlib.AsyncExitStack, clients: list[type[Client]], warm_up: Path
    ) -> list[Client]:
        """Opens and warms up (one upload: connections, credentials) every client."""
        ready = []
        for client_type in clients:
            client = client_type()
            try:
                await client.open(stack, self.target)
                await client.upload(client.stage(warm_up, 1)[0], "warm-up")
            except Exception as exc:
                self._drop(client, exc)
            else:
                ready.append(client)
        return ready

    async def measure(self, clients: list[Client], case: Case, src: Path) -> dict[str, Result]:
        """Times the case `repeats` times a client, checks what landed, samples loop lag."""
        keys = {c.slug: [f"{c.slug}/{case.slug}/{i}" for i in range(case.count)] for c in clients}
        samples: dict[str, list[tuple[float, float]]] = {c.slug: [] for c in clients}
        for _ in range(self.repeats):
            for client in self._alive(clients):
                try:
                    timing = await self._time(client, case, src, keys[client.slug])
                except Exception as exc:
                    self._drop(client, exc)
                else:
                    samples[client.slug].append(timing)
        results = {}
        for client in self._alive(clients):
            try:
                await self._verify(keys[client.slug], case.size)
                lag = (
                    await self._lag(client, src, keys[client.slug][0]) if case.measure_lag else None
                )
            except Exception as exc:
                self._drop(client, exc)
                continue
            walls, cpus = zip(*samples[client.slug], strict=True)
            mib = case.size * case.count / MIB
            results[client.slug] = Result(
                client.name,
                mib_s=mib / statistics.median(walls),
                cpu_ms_per_mib=statistics.median(cpus) / mib * 1000,
                lag=lag,
            )
        return results

    def _alive(self, clients: list[Client]) -> list[Client]:
        return [c for c in clients if c.slug not in self.notes]

    def _drop(self, client: Client, exc: BaseException) -> None:
        self.notes[client.slug] = _failure(exc)
        print(f"{client.name}: {self.notes[client.slug]}", flush=True)

    async def _time(
        self, client: Client, case: Case, src: Path, keys: list[str]
    ) -> tuple[float, float]:
        """One run of the case: (wall seconds, client CPU seconds)."""
        jobs = list(zip(client.stage(src, case.count), keys, strict=True))
        wall, cpu = time.perf_counter(), cpu_time()
        await _run_bounded(client.upload, jobs, case.concurrency)
        return time.perf_counter() - wall, cpu_time() - cpu

    async def _verify(self, keys: list[str], size: int) -> None:
        """Fails unless the store holds every key with the expected size."""
        limit = asyncio.Semaphore(16)

        async def check(key: str) -> None:
            async with limit:
                head = await self.checker.head_object(Bucket=self.target.bucket, Key=key)
            if head["ContentLength"] != size:
                raise RuntimeError(f"{key}: the store holds {head['ContentLength']} bytes")

        await asyncio.gather(*(check(key) for key in keys))

    async def _lag(self, client: Client, src: Path, key: str) -> dict[str, float]:
        """Event-loop lag during `LAG_UPLOADS` more, untimed uploads of `src`.

        One 100 MiB upload gives about 200 samples, too few for a p99 that is not simply
        the second worst.
        """
        monitor = LoopLagMonitor()
        async with BystanderLag() as bystander:
            for _ in range(min(LAG_UPLOADS, self.repeats)):
                (path,) = client.stage(src, 1)
                async with monitor:
                    await client.upload(path, key)
        return {
            **monitor.summary(),
            **{f"bystander_{name}": value for name, value in bystander.summary.items()},
        }


async def run(
    target: Target,
    clients: list[type[Client]],
    cases: list[Case],
    files: dict[int, Path],
    repeats: int,
) -> dict[Case, dict[str, Result]]:
    """Measures every case; per case, a result (or a note) a client, in `clients` order."""
    session = aiobotocore.session.get_session()
    async with contextlib.AsyncExitStack() as stack:
        checker = await stack.enter_async_context(
            session.create_client("s3", **_botocore_kwargs(target))
        )
        # Public write, so that the unsigned raw PUT is accepted by stores that check auth.
        await checker.create_bucket(Bucket=target.bucket, ACL="public-read-write")
        bench = Bench(target, checker, repeats)
        ready = await bench.open(stack, clients, files[min(files)])
        measured = {}
        for case in cases:
            print(f"  {case.title} ...", file=sys.stderr, flush=True)
            measured[case] = await bench.measure(ready, case, files[case.size])
    return {
        case: {
            c.slug: results.get(c.slug) or Result(c.name, note=bench.notes[c.slug]) for c in clients
        }
        for case, results in measured.items()
    }


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def report(results: dict[Case, dict[str, Result]]) -> None:
    """One table a case, with ratios to obstore and to the best Python peer."""
    for case, by_slug in results.items():
        obstore_mib = by_slug["obstore"].mib_s if "obstore" in by_slug else None
        peers = [by_slug[s].mib_s for s in PYTHON_PEERS if s in by_slug]
        best_python = max((p for p in peers if p is not None), default=None)
        headers = ["client", "MiB/s (median)", "CPU ms/MiB", "vs obstore", "vs best Python peer"]
        if case.measure_lag:
            headers += ["loop lag p50 ms", "p99 ms", "max ms", "idle loop elsewhere p99 / max ms"]
        table: list[list[object]] = []
        for r in by_slug.values():
            if r.mib_s is None:
                table.append([r.client, r.note, *["-"] * (len(headers) - 2)])
                continue
            row: list[object] = [
                r.client,
                r.mib_s,
                r.cpu_ms_per_mib,
                _ratio(r.mib_s, obstore_mib),
                _ratio(r.mib_s, best_python),
            ]
            if r.lag is not None:
                lag = r.lag
                row += [lag["p50_ms"], lag["p99_ms"], lag["max_ms"]]
                row.append(f"{lag['bystander_p99_ms']:.2f} / {lag['bystander_max_ms']:.2f}")
            table.append(row)
        print_table(case.title, headers, table)


@contextlib.contextmanager
def running_store(kind: str) -> Iterator[str]:
    """The store the clients upload to, in a child process; yields its URL."""
    if kind == "moto":
        with serving([sys.executable, "-c", _MOTO_MAIN]) as url:
            yield url
    else:
        with running_sink() as url:
            yield url


def _write_files(directory: Path, sizes: set[int]) -> dict[int, Path]:
    """One file a size, each a prefix of one buffer of random bytes."""
    data = os.urandom(max(sizes))
    files = {}
    for size in sorted(sizes):
        path = directory / f"{size}.bin"
        path.write_bytes(data[:size])
        files[size] = path
    return files


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="single-file sizes in MiB")
    parser.add_argument("--repeats", type=int, help="timed runs a case (median reported)")
    parser.add_argument("--batch", type=int, help="files of 1 MiB in the batch case")
    parser.add_argument("--concurrency", type=int, default=8, help="uploads in flight (batch)")
    parser.add_argument("--store", choices=["sink", "moto"], default="sink")
    slugs = [client.slug for client in CLIENTS]
    parser.add_argument("--clients", nargs="+", choices=slugs, default=slugs, metavar="CLIENT")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat: smoke run")
    args = parser.parse_args()
    args.sizes = args.sizes or ([1, 10] if args.quick else [1, 10, 100])
    args.repeats = args.repeats or (1 if args.quick else 15)
    args.batch = args.batch or (50 if args.quick else 200)
    return args


def main() -> None:
    args = _parse_args()
    for name, value in {
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ[name] = value  # for clients that read the standard chain (AsyncUploader)
    largest = max(args.sizes)
    cases = [
        Case(f"{s} MiB file", f"{s}mib", s * MIB, 1, 1, measure_lag=s == largest)
        for s in sorted(args.sizes)
    ]
    cases.append(
        Case(
            f"{args.batch} x 1 MiB, {args.concurrency} at a time",
            "batch",
            MIB,
            args.batch,
            args.concurrency,
            measure_lag=False,
        )
    )
    logging.basicConfig(stream=sys.stdout, format="%(name)s: %(message)s")
    logging.getLogger("recording_aio").setLevel(logging.INFO)  # which checksum "auto" chose
    libs = ["boto3", "aioboto3", "aiobotocore", "obstore", "aiohttp"]
    print(f"store: {args.store}; repeats: {args.repeats}; CPUs: {os.cpu_count()}")
    print(f"Python {sys.version.split()[0]}; " + ", ".join(f"{n} {_version(n)}" for n in libs))
    lag_uploads = min(LAG_UPLOADS, args.repeats)
    print(f"loop lag: sampled during {lag_uploads} uploads of the {largest} MiB file")
    with (
        tempfile.TemporaryDirectory(prefix="bench-uploader-") as tmp,
        running_store(args.store) as url,
    ):
        files = _write_files(Path(tmp), {case.size for case in cases})
        target = Target(url, BUCKET, args.concurrency)
        clients = [c for c in CLIENTS if c.slug in args.clients]
        results = asyncio.run(run(target, clients, cases, files, args.repeats))
    report(results)


if __name__ == "__main__":
    main()
