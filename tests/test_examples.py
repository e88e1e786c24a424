"""Every program in examples/ runs to success, so the examples cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ARGS = {
    "quickstart.py": [],
    "voice_agent.py": ["--calls", "3", "--seconds", "0.2"],
}
LIBRARY_MODULES = {"embedded_s3.py"}


def test_every_example_is_run_here() -> None:
    """Each program in examples/ has an entry in ARGS (helper modules excepted)."""
    programs = {p.name for p in EXAMPLES.glob("*.py")} - LIBRARY_MODULES
    assert programs == set(ARGS)


@pytest.mark.parametrize("name", sorted(ARGS), ids=sorted(ARGS))
def test_example_runs(name: str) -> None:
    """The example exits 0 with its embedded S3 server."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *ARGS[name]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if name == "quickstart.py":
        assert done.stdout.rstrip().endswith("OK")
        assert "matches the recording" in done.stdout
