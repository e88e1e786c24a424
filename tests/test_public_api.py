"""The public surface of recording_aio: names, version, typing marker, protocol, errors."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import importlib.resources
import subprocess
import sys
import tomllib
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest

import recording_aio
from recording_aio import (
    AsyncFileRecorder,
    ConversationRecorder,
    LocalFileInfo,
    errors,
    open_recorder,
)

CONTRACT = {
    "open_recorder",
    "AsyncFileRecorder",
    "ConversationRecorder",
    "LocalFileInfo",
    "WavInfo",
    "read_wav_info",
    "repair_wav",
    "build_s3_key",
    "RecordingJob",
    "UploadResult",
    "AsyncUploader",
    "RecordingError",
    "RecorderClosedError",
    "SampleRateMismatchError",
    "InvalidSamplesError",
    "QueueFullError",
    "UploaderClosedError",
    "UploadFailedError",
}
"""The names DESIGN.md promises; they may be added to, never renamed."""


def _defined_public_names() -> set[str]:
    """Public attributes of the package that the package itself defines."""
    values = {name: getattr(recording_aio, name) for name in dir(recording_aio)}
    return {
        name
        for name, value in values.items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", "").partition(".")[0] == "recording_aio"
    }


def test_recording_alone_does_not_import_the_s3_stack() -> None:
    """Importing the package loads aiobotocore only when AsyncUploader is first used."""
    code = (
        "import sys, recording_aio; assert 'aiobotocore' not in sys.modules; "
        "recording_aio.AsyncUploader; assert 'aiobotocore' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_is_exactly_the_public_names() -> None:
    """__all__ lists every public object the package defines, plus __version__, and no more."""
    assert len(recording_aio.__all__) == len(set(recording_aio.__all__))
    assert set(recording_aio.__all__) == _defined_public_names() | {"__version__"}


def test_all_keeps_every_name_the_design_promises() -> None:
    """Every name of the documented contract is exported."""
    assert set(recording_aio.__all__) >= CONTRACT, CONTRACT - set(recording_aio.__all__)


def test_star_import_gives_exactly_all() -> None:
    """`from recording_aio import *` binds exactly the names of __all__."""
    namespace: dict[str, object] = {}
    exec("from recording_aio import *", namespace)  # noqa: S102
    assert set(namespace) - {"__builtins__"} == set(recording_aio.__all__)


def test_version_is_the_installed_distribution_version() -> None:
    """__version__ is a non-empty string equal to the distribution's metadata version."""
    assert isinstance(recording_aio.__version__, str)
    assert recording_aio.__version__
    assert recording_aio.__version__ == importlib.metadata.version("recording-aio")


def test_py_typed_marker_ships_in_the_package() -> None:
    """py.typed is in the package directory, and the wheel build takes that whole directory."""
    marker = importlib.resources.files("recording_aio").joinpath("py.typed")
    assert marker.is_file()
    pyproject = Path(recording_aio.__file__).parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not running from a source tree")
    wheel = tomllib.loads(pyproject.read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert "recording_aio" in wheel["packages"]
    assert not any("py.typed" in pattern for pattern in wheel.get("exclude", []))


async def test_async_file_recorder_is_a_conversation_recorder(tmp_path: Path) -> None:
    """An AsyncFileRecorder passes a runtime isinstance check against the protocol."""
    rec = await open_recorder(tmp_path, "proto", 8000)
    try:
        assert isinstance(rec, ConversationRecorder)
        assert isinstance(rec, AsyncFileRecorder)
    finally:
        info = await rec.aclose()
    assert isinstance(info, LocalFileInfo)
    assert not isinstance(object(), ConversationRecorder)


def test_local_file_info_has_the_documented_fields_and_is_frozen() -> None:
    """LocalFileInfo has exactly the documented fields and cannot be changed after creation."""
    names = [f.name for f in dataclasses.fields(LocalFileInfo)]
    assert names == [
        "path",
        "started_at",
        "ended_at",
        "format",
        "sample_rate",
        "channels",
        "num_frames",
        "size_bytes",
    ]
    now = datetime.now(UTC)
    info = LocalFileInfo(Path("a.wav"), now, now, "wav", 8000, 1, 4000, 8044)
    assert info.duration_s == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_frames = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("error", "builtins"),
    [
        (errors.ConfigurationError, (ValueError,)),
        (errors.InvalidSamplesError, (ValueError, TypeError)),
        (errors.SampleRateMismatchError, (ValueError,)),
        (errors.RecordingTooLargeError, (ValueError,)),
        (errors.RecorderClosedError, (ValueError,)),
        (errors.RecordingExistsError, (FileExistsError,)),
        (errors.InvalidWavError, (ValueError,)),
        (errors.QueueFullError, (asyncio.QueueFull,)),
        (errors.UploaderClosedError, (RuntimeError,)),
        (errors.UploadFailedError, (OSError,)),
    ],
)
def test_each_error_is_a_recording_error_and_its_builtin(
    error: type[Exception], builtins: tuple[type[Exception], ...]
) -> None:
    """Every error derives from RecordingError and from the builtin a caller would catch."""
    assert issubclass(error, errors.RecordingError)
    for builtin in builtins:
        assert issubclass(error, builtin)
    assert getattr(recording_aio, error.__name__) is error
