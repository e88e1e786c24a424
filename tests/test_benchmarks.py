"""Smoke runs of the benchmarks (`--quick`), so that `nox -s bench` keeps working.

They check that every table is printed and every client measured, not the figures: speed is
for the benchmarks themselves. Peers that are not installed (obstore, aioboto3: the `bench`
extra) are skipped by the uploader benchmark, which the table says.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rows(output: str, title: str) -> dict[str, list[str]]:
    """The rows of the Markdown table under `### title`, by their first cell."""
    section = output.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ")][1:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return {row[0]: row[1:] for row in cells}


def test_uploader_benchmark_measures_every_installed_client() -> None:
    output = run_benchmark(
        "bench_uploader.py",
        "--clients", "boto3", "aiobotocore", "aiohttp", "recording_aio", "recording_aio_md5",
    )  # fmt: skip
    for title in ("1 MiB file", "10 MiB file", "50 x 1 MiB, 8 at a time"):
        table = rows(output, title)
        assert len(table) == 5, table
        for client, cells in table.items():
            assert re.fullmatch(r"[\d,]+\.\d+", cells[0]), (title, client, cells)
    lag = rows(output, "10 MiB file")["recording_aio AsyncUploader (as it comes: auto)"]
    assert all(re.fullmatch(r"[\d.]+", cell) for cell in lag[-4:-1]), lag
    assert re.fullmatch(r"[\d.]+ / [\d.]+", lag[-1]), lag  # the idle loop in another process
    assert "checks CRC32 checksums; uploads are verified with CRC32" in output


def test_recorder_benchmark_prints_every_table() -> None:
    output = run_benchmark("bench_recorder.py")
    for title in ("1000 sessions: open and close bursts, memory", "Targets"):
        assert f"### {title}\n" in output
    bursts = rows(output, "1000 sessions: open and close bursts, memory")
    assert set(bursts) == {"floor", "write_samples", "aiofiles/frame"}
    scale = next(t for t in output.split("### ") if t.startswith("Scale:"))
    scale_rows = rows(output, scale.split("\n", 1)[0])
    assert [name.split(" x ")[0] for name in scale_rows] == ["1000", "1", "1"]
    for cells in scale_rows.values():
        assert all(re.fullmatch(r"[\d.]+", cell) for cell in cells), cells
    assert "write_samples at 1000 recorders:" in output
    assert "one recorder written flat out:" in output
