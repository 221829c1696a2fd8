"""A read-only output folder or a full disk ends a stage command with one line naming the path and the
OS error, exit 2 (``guarded`` in afmrl/commands/common.py), and no temporary file is left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from afmrl.commands.common import guarded

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


def _one_command(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @guarded
    def write() -> None:
        raise exc

    return app


@pytest.mark.parametrize("exc, shown", [
    (OSError(errno.ENOSPC, NO_SPACE, "/data/out/report.json"), ["/data/out/report.json", NO_SPACE]),
    (PermissionError(errno.EACCES, "Permission denied", "/data/out"), ["/data/out", "Permission denied"]),
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/x"), ["/mnt/ro/x", os.strerror(errno.EROFS)]),
    (OSError(errno.ENOSPC, NO_SPACE), [NO_SPACE]),  # no file named: still one line
])  # fmt: skip
def test_guarded_turns_os_errors_into_one_line_and_exit_2(exc, shown):
    result = CliRunner().invoke(_one_command(exc), [])
    assert result.exit_code == 2, result.output
    assert all(s in result.output for s in shown), result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_guarded_leaves_programming_errors_alone():
    result = CliRunner().invoke(_one_command(ConnectionResetError("peer went away")), [])
    assert result.exit_code == 1 and isinstance(result.exception, ConnectionResetError)


def _unwritable(tmp_path: Path) -> tuple[Path, Path]:
    """An output folder that cannot be written, even by root: under a regular file (mkdir fails with
    ENOTDIR); as a normal user, a read-only folder (chmod 0o555) too. Returns (--out, the path to name)."""
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out", ro / "out"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "out", blocker / "out"


@pytest.fixture
def unwritable(tmp_path):
    out, named = _unwritable(tmp_path)
    yield out, named
    for p in tmp_path.iterdir():
        if p.is_dir():
            p.chmod(0o755)


def _cli(args: list[str]):
    from afmrl.cli import app

    return CliRunner().invoke(app, ["--set", "tracking.enabled=false", *args])


def test_synth_into_an_unwritable_folder_says_where_and_exits_2(unwritable):
    out, named = unwritable
    result = _cli(["--set", "synth.n_base_products=4", "data", "synth", "--out", str(out)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert str(named) in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_validate_into_an_unwritable_folder_says_where_and_exits_2(unwritable, synth_catalog):
    out, named = unwritable
    result = _cli(["--set", "validate.check_images=false", "validate", str(synth_catalog), "--out", str(out)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert str(named) in result.output and "Traceback" not in result.output


def test_validate_whose_report_cannot_be_replaced_names_it_and_leaves_no_temporary(tmp_path, synth_catalog):
    """Fails as root too: report.json is a folder, so the rename over it fails (EISDIR)."""
    out = tmp_path / "validated"
    (out / "report.json").mkdir(parents=True)
    result = _cli(["--set", "validate.check_images=false", "validate", str(synth_catalog), "--out", str(out)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert str(out / "report.json") in result.output and "Traceback" not in result.output
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or "tmp" in p.name]
