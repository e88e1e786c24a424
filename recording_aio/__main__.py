"""The command line: inspect and repair WAV recordings, upload a backlog, recover a spool.

Run `recording-aio --help` (or `python -m recording_aio --help`) for the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import mimetypes
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry

from . import (
    RecordingError,
    RecordingJob,
    UploadFailedError,
    UploadHandle,
    UploadResult,
    WavInfo,
    __version__,
    build_s3_key,
    find_unfinished,
    read_wav_info,
    repair_wav,
)
from .checksums import CHECKSUM_MODES

if TYPE_CHECKING:
    from .uploader import AsyncUploader

PROG = "recording-aio"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXPECTED_ERRORS = (RecordingError, OSError, BotoCoreError, ClientError)
"""Errors that end a command with one line on stderr instead of a traceback."""

Handler = Callable[[argparse.Namespace, "Output"], int]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Status = Literal["pending", "uploaded", "failed", "skipped"]

STATE_TEXT = {
    "final": "final",
    "placeholder": "placeholder: sizes not written yet (a crashed or still-open recording)",
    "stale": "stale: sizes disagree with the file's length",
}


def exit_help(ok: str, failed: str, usage: str = "a usage or configuration error") -> str:
    """The 'exit status' part of an epilog."""
    return f"exit status:\n  0  {ok}\n  1  {failed}\n  2  {usage}"


# -- output --------------------------------------------------------------------------------


class Output:
    """Where a command writes: text for people, or one JSON document with --json."""

    def __init__(self, command: str, json_mode: bool) -> None:
        self.command = command
        self.json_mode = json_mode

    def text(self, line: str = "") -> None:
        """A line of the human-readable report (stdout); nothing with --json."""
        if not self.json_mode:
            print(line, file=sys.stdout, flush=True)

    def item_error(self, message: str) -> None:
        """One failed item (stderr); with --json it is in the document instead."""
        if not self.json_mode:
            error_line(message)

    def document(self, doc: dict[str, Any]) -> None:
        """The --json result; nothing without --json."""
        if self.json_mode:
            json.dump({"command": self.command, **doc}, sys.stdout, indent=2)
            sys.stdout.write("\n")
            sys.stdout.flush()

    def fatal(self, message: str) -> None:
        """An error that ended the command: a line on stderr, and a JSON document with --json."""
        error_line(message)
        self.document({"ok": False, "error": message})


def error_line(message: str) -> None:
    """Writes `recording-aio: error: <message>` as one line on stderr."""
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr, flush=True)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def plural(n: int, word: str) -> str:
    """plural(2, 'file') -> '2 files'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def describe(exc: BaseException) -> str:
    """A one-line message for an expected error."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, ClientError | BotoCoreError):
        return f"S3: {message}"
    return message


# -- inspect -------------------------------------------------------------------------------


def info_json(info: WavInfo) -> dict[str, Any]:
    """The --json form of a WAV header."""
    return {
        "path": str(info.path),
        "format": "wav",
        "encoding": "pcm",
        "sample_rate": info.sample_rate,
        "channels": info.channels,
        "bits_per_sample": info.bits_per_sample,
        "num_frames": info.num_frames,
        "duration_s": info.duration_s,
        "size_bytes": info.file_size,
        "data_offset": info.data_offset,
        "data_bytes": info.data_bytes,
        "header_state": info.header_state,
    }


def info_text(info: WavInfo) -> list[str]:
    """The human-readable form of a WAV header."""
    channels = plural(info.channels, "channel")
    lines = [
        str(info.path),
        f"  format    PCM WAV, {info.bits_per_sample}-bit, {channels}, {info.sample_rate} Hz",
        f"  frames    {info.num_frames} ({info.duration_s:.3f} s)",
        f"  size      {info.file_size} bytes ({info.data_bytes} of audio at offset "
        f"{info.data_offset})",
        f"  header    {STATE_TEXT[info.header_state]}",
    ]
    if info.header_state != "final":
        lines.append(f"            run `{PROG} repair {info.path}` to make it exact")
    return lines


def cmd_inspect(args: argparse.Namespace, out: Output) -> int:
    """Prints the header of each file; exit 1 if any is not a readable WAV."""
    files: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for name in args.files:
        try:
            info = read_wav_info(name)
        except (RecordingError, OSError) as exc:
            errors.append({"path": name, "error": describe(exc)})
            out.item_error(describe(exc))
            continue
        files.append(info_json(info))
        if len(files) > 1:
            out.text()
        for line in info_text(info):
            out.text(line)
    out.document({"ok": not errors, "files": files, "errors": errors})
    return EXIT_FAILED if errors else EXIT_OK


# -- repair --------------------------------------------------------------------------------


def repair_targets(paths: Sequence[str], min_age: float, out: Output) -> list[Path]:
    """The files named, plus the unfinished WAVs of the directories named."""
    targets: list[Path] = []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            targets.append(path)
            continue
        found = [info.path for info in find_unfinished(path, min_age_s=min_age)]
        if not found:
            out.text(f"{path}: no WAV with an unfinished header older than {min_age:g} s")
        targets.extend(found)
    return targets


def repair_one(path: Path, dry_run: bool) -> dict[str, Any]:
    """Repairs one file (or says what a repair would do) and describes the change."""
    before = read_wav_info(path)
    if before.header_state == "final":
        return repair_record(before, "unchanged", before.header_state, before.num_frames, 0)
    if dry_run:
        torn = before.file_size - before.data_offset - before.data_bytes
        return repair_record(before, "would-repair", "final", before.num_frames, torn)
    after = repair_wav(path)
    cut = before.file_size - after.file_size
    return repair_record(before, "repaired", after.header_state, after.num_frames, cut)


def repair_record(
    before: WavInfo, action: str, state_after: str, frames_after: int, truncated: int
) -> dict[str, Any]:
    """The --json form of what a repair did."""
    return {
        "path": str(before.path),
        "action": action,
        "header_before": before.header_state,
        "header_after": state_after,
        "frames_before": before.num_frames,
        "frames_after": frames_after,
        "duration_s": frames_after / before.sample_rate,
        "bytes_truncated": truncated,
    }


def repair_text(r: dict[str, Any]) -> str:
    """One line saying what a repair did."""
    if r["action"] == "unchanged":
        return f"{r['path']}: header already final, nothing to do"
    frames = plural(r["frames_after"], "frame")
    if r["frames_before"] != r["frames_after"]:
        frames = f"frames {r['frames_before']} -> {r['frames_after']}"
    verb, cut = (
        ("would repair", "would be truncated")
        if r["action"] == "would-repair"
        else ("repaired", "truncated")
    )
    return (
        f"{verb} {r['path']}: header {r['header_before']} -> {r['header_after']}, "
        f"{frames} ({r['duration_s']:.3f} s), {plural(r['bytes_truncated'], 'byte')} {cut}"
    )


def cmd_repair(args: argparse.Namespace, out: Output) -> int:
    """Repairs each file, and the unfinished WAVs of each directory; exit 1 if any failed."""
    results: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    for path in repair_targets(args.paths, args.min_age, out):
        try:
            result = repair_one(path, args.dry_run)
        except (RecordingError, OSError) as exc:
            errors.append({"path": str(path), "error": describe(exc)})
            out.item_error(describe(exc))
            continue
        results.append(result)
        out.text(repair_text(result))
    doc = {"ok": not errors, "dry_run": args.dry_run, "files": results, "errors": errors}
    out.document(doc)
    return EXIT_FAILED if errors else EXIT_OK


# -- upload --------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """One file of an upload backlog and what became of it."""

    path: Path
    key: str | None = None
    size: int = 0
    job: RecordingJob | None = None
    status: Status = "pending"
    error: str | None = None
    reason: str | None = None
    result: UploadResult | None = None

    def to_json(self) -> dict[str, Any]:
        """The --json form."""
        doc: dict[str, Any] = {
            "file": str(self.path),
            "status": self.status,
            "key": self.key,
            "size_bytes": self.size,
        }
        if self.result is not None:
            doc.update(etag=self.result.etag, attempts=self.result.attempts)
        if self.error is not None:
            doc.update(error=self.error, reason=self.reason)
        return doc


def content_type(path: Path) -> str:
    """audio/wav for .wav, else a guess from the suffix."""
    if path.suffix.lower() == ".wav":
        return "audio/wav"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def plan_uploads(names: Sequence[str], bucket: str, prefix: str) -> list[Item]:
    """An item per file with its job, or its error (unreadable, bad name, duplicate key)."""
    items: list[Item] = []
    owners: dict[str, Path] = {}
    for name in names:
        item = Item(Path(name))
        items.append(item)
        try:
            stat = item.path.stat()
            when = datetime.fromtimestamp(stat.st_mtime, UTC)
            key = build_s3_key(prefix, item.path.stem, item.path.suffix[1:], t=when)
        except (RecordingError, OSError) as exc:
            item.status, item.reason = "failed", "invalid"
            item.error = f"{item.path}: cannot upload: {describe(exc)}"
            continue
        item.key, item.size = key, stat.st_size
        if key in owners:
            item.status, item.reason = "failed", "duplicate_key"
            item.error = f"{item.path}: same key {key} as {owners[key]}; not uploaded"
            continue
        owners[key] = item.path
        item.job = RecordingJob(item.path, bucket, key, content_type=content_type(item.path))
    return items


class Progress:
    """One updating line on stderr: files done/failed/total, bytes, rate. Off when disabled."""

    def __init__(self, items: Sequence[Item], enabled: bool) -> None:
        self.enabled = enabled
        self.total = len(items)
        self.total_bytes = sum(item.size for item in items if item.job is not None)
        self.started = time.monotonic()
        self.done = self.failed = self.bytes_done = 0

    def render(self) -> None:
        """Redraws the line."""
        if not self.enabled:
            return
        rate = self.bytes_done / max(time.monotonic() - self.started, 1e-6)
        line = (
            f"uploading: {self.done} done, {self.failed} failed, {self.total} total | "
            f"{human_bytes(self.bytes_done)} / {human_bytes(self.total_bytes)} | "
            f"{human_bytes(rate)}/s"
        )
        sys.stderr.write(f"\r\x1b[K{line}")
        sys.stderr.flush()

    def clear(self) -> None:
        """Erases the line, before other output."""
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    async def tick(self, interval: float = 0.5) -> None:
        """Redraws every `interval` seconds until cancelled, so the rate stays current."""
        while True:
            self.render()
            await asyncio.sleep(interval)


class UploadRun:
    """Feeds the items to an uploader and follows their handles."""

    def __init__(self, items: list[Item], keep_going: bool, out: Output, progress: Progress):
        self.items = items
        self.keep_going = keep_going
        self.out = out
        self.progress = progress
        self.stopped = not keep_going and any(i.status == "failed" for i in items)
        for item in items:
            if item.error is not None:
                self.report_failure(item)

    async def feed(self, uploader: AsyncUploader) -> None:
        """Enqueues every planned job (until a failure stops it) and waits for them all."""
        followers: list[asyncio.Task[None]] = []
        for item in self.items:
            if item.job is None:
                continue
            if self.stopped:
                item.status = "skipped"
                continue
            try:
                handle = await uploader.enqueue(item.job)
            except (RecordingError, OSError) as exc:
                self.fail(item, f"{item.path}: {describe(exc)}", "rejected")
                continue
            followers.append(asyncio.create_task(self.follow(item, handle)))
        await asyncio.gather(*followers)

    async def follow(self, item: Item, handle: UploadHandle) -> None:
        """Waits for one job and records its outcome."""
        try:
            result = await handle
        except UploadFailedError as exc:
            self.fail(item, f"{item.path}: {exc}", exc.reason)
            return
        item.status, item.result = "uploaded", result
        self.progress.done += 1
        self.progress.bytes_done += result.size_bytes
        self.say(f"uploaded {item.path} -> s3://{result.bucket}/{result.key}")

    def fail(self, item: Item, message: str, reason: str) -> None:
        """Records a failed item; without --keep-going no further upload starts."""
        item.status, item.error, item.reason = "failed", message, reason
        self.stopped = self.stopped or not self.keep_going
        self.report_failure(item)

    def report_failure(self, item: Item) -> None:
        """Counts and prints a failed item."""
        self.progress.failed += 1
        self.progress.clear()
        self.out.item_error(item.error or str(item.path))
        self.progress.render()

    def say(self, line: str) -> None:
        """Prints a line above the progress line."""
        self.progress.clear()
        self.out.text(line)
        self.progress.render()


def uploader_from(args: argparse.Namespace) -> AsyncUploader:
    """An AsyncUploader with the store options of the command line, on a private registry."""
    options: dict[str, Any] = {
        "workers": args.workers,
        "queue_size": args.workers,
        "max_retries": args.max_retries,
        "checksum": args.checksum,
        "endpoint_url": args.endpoint_url,
        "region_name": args.region,
        "spool_dir": args.spool,
        "registry": CollectorRegistry(),
        "name": "cli",
    }
    from .uploader import AsyncUploader  # only the upload commands pay for aiobotocore

    return AsyncUploader(**options)


async def run_uploads(args: argparse.Namespace, run: UploadRun) -> None:
    """Starts an uploader, feeds it the backlog, and shuts it down."""
    uploader = uploader_from(args)
    await uploader.start()
    ticker = asyncio.create_task(run.progress.tick()) if run.progress.enabled else None
    try:
        await run.feed(uploader)
    finally:
        if ticker is not None:
            ticker.cancel()
        await uploader.shutdown(timeout=2.0)
        run.progress.clear()


def upload_summary(items: Sequence[Item], elapsed: float) -> dict[str, Any]:
    """Counts, bytes and rate of a finished upload run."""
    count = {s: sum(i.status == s for i in items) for s in ("uploaded", "failed", "skipped")}
    uploaded_bytes = sum(i.size for i in items if i.status == "uploaded")
    return {
        "ok": count["failed"] == 0 and count["skipped"] == 0,
        "total": len(items),
        **count,
        "bytes_uploaded": uploaded_bytes,
        "elapsed_s": round(elapsed, 3),
        "bytes_per_s": round(uploaded_bytes / max(elapsed, 1e-6)),
    }


def print_upload_summary(out: Output, items: Sequence[Item], summary: dict[str, Any]) -> None:
    """The human-readable end of an upload run."""
    line = f"{summary['uploaded']} of {plural(summary['total'], 'file')} uploaded"
    if summary["uploaded"]:
        line += (
            f" ({human_bytes(summary['bytes_uploaded'])} in {summary['elapsed_s']:.2f} s, "
            f"{human_bytes(summary['bytes_per_s'])}/s)"
        )
    for status, words in (("failed", "failed"), ("skipped", "not attempted")):
        if summary[status]:
            line += f", {summary[status]} {words}"
    out.text(line)
    kept = [i for i in items if i.status != "uploaded"]
    if kept:
        out.text("kept, not uploaded:")
        for item in kept:
            out.text(f"  {item.path} ({item.reason or 'not attempted after a failure'})")
    if summary["skipped"]:
        out.text("  (use --keep-going to go on uploading after a failure)")


def cmd_upload(args: argparse.Namespace, out: Output) -> int:
    """Uploads the files; exit 1 if any failed or was not attempted."""
    items = plan_uploads(args.files, args.bucket, args.prefix)
    progress = Progress(items, enabled=not args.json and sys.stderr.isatty())
    run = UploadRun(items, args.keep_going, out, progress)
    asyncio.run(run_uploads(args, run))
    summary = upload_summary(items, time.monotonic() - progress.started)
    print_upload_summary(out, items, summary)
    out.document({**summary, "bucket": args.bucket, "files": [i.to_json() for i in items]})
    return EXIT_OK if summary["ok"] else EXIT_FAILED


# -- recover -------------------------------------------------------------------------------


async def recover_spool(args: argparse.Namespace) -> dict[str, Any]:
    """Uploads what the spool holds, waiting at most args.timeout seconds."""
    uploader = uploader_from(args)
    await uploader.start()
    handles = uploader.recovered
    try:
        async with asyncio.timeout(args.timeout):
            await uploader.join()
    except TimeoutError:
        pass
    finally:
        await uploader.shutdown(timeout=0)
    failed: dict[str, int] = {}
    for handle in handles:
        try:
            handle.result()
        except UploadFailedError as exc:
            failed[exc.reason] = failed.get(exc.reason, 0) + 1
    uploaded = len(handles) - sum(failed.values())
    return {
        "ok": not failed,
        "spool": str(args.spool),
        "recovered": len(handles),
        "uploaded": uploaded,
        "failed": {k: v for k, v in failed.items() if k != "shutdown"},
        "pending": len(handles) - uploaded,
        "timed_out": failed.get("shutdown", 0) > 0,
    }


def cmd_recover(args: argparse.Namespace, out: Output) -> int:
    """Drains a spool; exit 1 if jobs remain in it."""
    if not args.spool.is_dir():
        out.fatal(f"{args.spool}: no such spool directory")
        return EXIT_USAGE
    report = asyncio.run(recover_spool(args))
    out.text(
        f"{args.spool}: {plural(report['recovered'], 'spooled job')}, "
        f"{report['uploaded']} uploaded, {report['pending']} still pending"
    )
    if report["timed_out"]:
        out.text(f"stopped after the --timeout of {args.timeout:g} s")
    if report["failed"]:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(report["failed"].items()))
        out.text(f"failed: {reasons} (--verbose logs each failure)")
    if report["pending"]:
        out.item_error(
            f"{plural(report['pending'], 'job')} still in {args.spool}; the files and spool "
            "entries are kept for the next run"
        )
    out.document(report)
    return EXIT_OK if report["ok"] else EXIT_FAILED


# -- the parser ----------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type: a number of `kind` >= 0."""

    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and epilogs."""


def common_options() -> argparse.ArgumentParser:
    """--json and --verbose, shared by every command."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output")
    group.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout, no progress"
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", help="log what the library does to stderr"
    )
    return parent


def store_options() -> argparse.ArgumentParser:
    """The options that configure the uploader, shared by upload and recover."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("store")
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="an S3-compatible endpoint (MinIO, R2, ...); default: AWS S3",
    )
    group.add_argument(
        "--region", metavar="REGION", help="the region; default: from the AWS configuration"
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        default=4,
        metavar="N",
        help="concurrent uploads (default: %(default)s)",
    )
    group.add_argument(
        "--max-retries",
        type=non_negative(int),
        default=3,
        metavar="N",
        help="retries per request on throttling, 5xx and connection errors (default: %(default)s)",
    )
    group.add_argument(
        "--checksum",
        choices=CHECKSUM_MODES,
        default="auto",
        help="how the store proves it holds a file before it is deleted: md5 (its ETag, any "
        "store), crc32 (a checksum the store must check, as AWS S3 does), auto (crc32 on AWS "
        "S3 and on a store that shows it checks it when asked before the first upload, md5 "
        "elsewhere; the default)",
    )
    return parent


def add_inspect(commands: Commands, common: argparse.ArgumentParser) -> None:
    """The `inspect` command."""
    p = commands.add_parser(
        "inspect",
        parents=[common],
        formatter_class=Formatter,
        help="show the header of WAV files",
        description="Show the format, length and header state of WAV files.\n\n"
        "The header is 'final' when its sizes match the file, 'placeholder' while a\n"
        "recording is open or after a crash (readers play it to the end of the file),\n"
        "and 'stale' when its sizes disagree with the file. `repair` fixes the last two.",
        epilog="examples:\n"
        f"  {PROG} inspect call-42.wav\n"
        f"  {PROG} inspect --json /var/rec/*.wav\n\n"
        + exit_help("every file is a readable WAV", "a file is not a PCM WAV or cannot be read"),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="WAV files to inspect")
    p.set_defaults(handler=cmd_inspect)


def add_repair(commands: Commands, common: argparse.ArgumentParser) -> None:
    """The `repair` command."""
    p = commands.add_parser(
        "repair",
        parents=[common],
        formatter_class=Formatter,
        help="fix the headers of WAVs left by a crash",
        description="Make the header of WAV files exact from the files' real length, in place.\n\n"
        "A torn trailing frame is dropped; the audio is otherwise untouched. A file\n"
        "named is repaired whatever its age; in a directory, only *.wav files whose\n"
        "header is not final and that were not modified for --min-age seconds are\n"
        "repaired, so a recording still being written is left alone.",
        epilog="examples:\n"
        f"  {PROG} repair call-42.wav\n"
        f"  {PROG} repair --dry-run /var/rec\n"
        f"  {PROG} repair --min-age 300 /var/rec\n\n"
        + exit_help(
            "all repaired, or nothing to do", "a file is not a PCM WAV or cannot be written"
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="WAV files or directories")
    p.add_argument(
        "--min-age",
        type=non_negative(float),
        default=60.0,
        metavar="SECONDS",
        help="in directories, skip files modified more recently (default: %(default)g)",
    )
    p.add_argument("-n", "--dry-run", action="store_true", help="report, change nothing")
    p.set_defaults(handler=cmd_repair)


def add_upload(commands: Commands, common: argparse.ArgumentParser) -> None:
    """The `upload` command."""
    p = commands.add_parser(
        "upload",
        parents=[common, store_options()],
        formatter_class=Formatter,
        help="upload a backlog of recordings to S3",
        description="Upload files to S3, verified, deleting each local file once the store\n"
        "holds its exact bytes. A file that fails is kept and listed.\n\n"
        "The key of each file is build_s3_key(PREFIX, stem, suffix, t=mtime):\n"
        "  PREFIX/YYYY/MM/DD/STEM.SUFFIX\n"
        "where YYYY/MM/DD is the file's modification date in UTC, and STEM.SUFFIX is its\n"
        "name. With no --prefix, call-42.wav last modified on 2024-05-01 (UTC) goes to\n"
        "  recordings/2024/05/01/call-42.wav\n"
        "Two files that would get the same key are not both uploaded.\n\n"
        "Credentials come from the standard AWS chain (environment, ~/.aws, instance role).\n"
        "A progress line is shown on stderr when it is a terminal.",
        epilog="examples:\n"
        f"  {PROG} upload --bucket calls /var/rec/*.wav\n"
        f"  {PROG} upload --bucket calls --prefix prod/eu --keep-going --json /var/rec/*.wav\n"
        f"  {PROG} upload --bucket calls --endpoint-url http://localhost:9000 a.wav\n"
        f"  {PROG} upload --bucket calls --spool /var/spool/rec a.wav\n"
        f"  {PROG} recover --spool /var/spool/rec      # if that run was killed\n\n"
        + exit_help(
            "every file uploaded",
            "a file failed or was not attempted (it is kept)",
            "a usage or configuration error, or the uploader could not start",
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="files to upload")
    p.add_argument("--bucket", required=True, help="the destination bucket")
    p.add_argument(
        "--prefix", default="", help="key prefix; default: 'recordings' (surrounding / trimmed)"
    )
    p.add_argument(
        "--spool",
        type=Path,
        metavar="DIR",
        help="persist each job in DIR before uploading it, so `recover` can finish an "
        "interrupted run; failed jobs stay there",
    )
    p.add_argument(
        "-k",
        "--keep-going",
        action="store_true",
        help="go on after a failure; by default no new upload starts after the first one",
    )
    p.set_defaults(handler=cmd_upload)


def add_recover(commands: Commands, common: argparse.ArgumentParser) -> None:
    """The `recover` command."""
    p = commands.add_parser(
        "recover",
        parents=[common, store_options()],
        formatter_class=Formatter,
        help="upload the jobs left in a spool directory",
        description="Upload every job a previous uploader left in its spool directory (after a\n"
        "crash, a shutdown deadline or failed attempts), then stop. Each job keeps the\n"
        "bucket and key it was enqueued with. Jobs that fail again, or that are not done\n"
        "within --timeout, stay in the spool with their files.\n\n"
        "The spool must not be in use: a running uploader holds a lock on it.",
        epilog="examples:\n"
        f"  {PROG} recover --spool /var/spool/rec\n"
        f"  {PROG} recover --spool /var/spool/rec --timeout 600 --json\n"
        f"  {PROG} recover --spool ./spool --endpoint-url http://localhost:9000\n\n"
        + exit_help(
            "the spool is empty",
            "jobs remain in the spool",
            "no such spool, the spool is locked by a running uploader, or a configuration error",
        ),
    )
    p.add_argument(
        "--spool", type=Path, required=True, metavar="DIR", help="the uploader's spool directory"
    )
    p.add_argument(
        "--timeout",
        type=non_negative(float),
        default=300.0,
        metavar="S",
        help="give up waiting after S seconds (default: %(default)g)",
    )
    p.set_defaults(handler=cmd_recover)


def build_parser() -> argparse.ArgumentParser:
    """The parser of `recording-aio` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=Formatter,
        description="Inspect and repair WAV recordings, upload them to S3, recover a spool.",
        epilog="Run `%(prog)s COMMAND --help` for a command's options and examples.\n\n"
        "examples:\n"
        f"  {PROG} repair /var/rec && {PROG} upload --bucket calls /var/rec/*.wav\n"
        f"  {PROG} recover --spool /var/spool/rec\n\n"
        + exit_help(
            "success",
            "some items failed (the others were processed)",
            "a usage or configuration error",
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    common = common_options()
    for add in (add_inspect, add_repair, add_upload, add_recover):
        add(commands, common)
    return parser


# -- entry point ---------------------------------------------------------------------------


def configure_logging(verbose: bool) -> None:
    """--verbose: the library's log on stderr; otherwise silent (results are printed)."""
    logger = logging.getLogger("recording_aio")
    if verbose:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()
    logger.handlers = [handler]


def exit_code(code: str | int | None) -> int:
    """The status of an argparse SystemExit (it prints its own message)."""
    return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)


def silence_stdout() -> None:
    """After the reader closed stdout (e.g. `| head`), so the exit flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exit_code(exc.code)
    configure_logging(args.verbose)
    out = Output(args.command, args.json)
    handler: Handler = args.handler
    try:
        return handler(args, out)
    except KeyboardInterrupt:
        error_line("interrupted; files not yet uploaded are kept")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_FAILED
    except EXPECTED_ERRORS as exc:
        out.fatal(describe(exc))
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
