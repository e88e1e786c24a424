"""Sessions: tests (default), lint, typecheck, soak (slow crash/fault runs), bench, demo.

bench-aioboto3 runs the uploader benchmark's aioboto3 rows in an environment of their own.

Run `nox` for the default sessions, or `nox -s NAME`. Every session installs the package
with its extras into its own virtualenv, so it works on a fresh machine.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run: everything except the tests marked slow."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Long crash, fault and load runs: hundreds of SIGKILLs and thousands of faulty uploads."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "recording_aio")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers a user would otherwise pick; prints Markdown tables."""
    session.install("-e", ".[bench]", "aiofiles")
    session.run("python", "benchmarks/bench_recorder.py", *session.posargs)
    session.run("python", "benchmarks/bench_uploader.py", *session.posargs)


@nox.session(name="bench-aioboto3")
def bench_aioboto3(session: nox.Session) -> None:
    """The uploader benchmark's aioboto3 rows, apart: aioboto3 pins an older aiobotocore."""
    session.install("-e", ".[bench]", "aioboto3")
    session.run("python", "benchmarks/bench_uploader.py", "--clients", "aioboto3", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The quickstart: record a call and upload it to an embedded S3 server."""
    session.install("-e", ".[demo]")
    session.run("python", "examples/quickstart.py", *session.posargs)
