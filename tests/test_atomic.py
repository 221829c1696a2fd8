"""Broken disks: an output file appears whole or not at all (:mod:`afmrl.atomic`): a write that fails
midway (a full disk, a serialisation error) keeps the previous file and leaves no temporary behind."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from afmrl.atomic import atomic_path, write_json_atomic, write_text_atomic

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


class _Unserialisable:
    """Serialises halfway: json.dump has written the start of the document when it meets this."""


def _refuse(obj: object) -> object:
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def test_a_write_failing_halfway_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    write_json_atomic(target, {"version": 1})
    before = target.read_text()
    with pytest.raises(TypeError, match="cannot serialise"):
        write_json_atomic(target, {"a": list(range(1000)), "b": _Unserialisable()}, default=_refuse)
    assert target.read_text() == before and json.loads(before) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_full_disk_midway_keeps_the_previous_file_and_names_the_target(tmp_path):
    """A full disk, simulated: the writer gets half of its bytes out, then the OS says ENOSPC."""
    target = tmp_path / "listings.parquet"
    target.write_bytes(b"the previous table")
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"half of the new ")
            raise OSError(errno.ENOSPC, NO_SPACE)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"the previous table"
    assert [p.name for p in tmp_path.iterdir()] == ["listings.parquet"]


def test_writers_never_share_a_temporary_name_and_keep_the_suffix(tmp_path):
    target = tmp_path / "summary.md"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b and a.parent == b.parent == tmp_path and a.suffix == b.suffix == ".md"
        a.write_text("first")
        b.write_text("second")
    assert target.read_text() == "first"  # the outer block ends last
    write_text_atomic(target, "third")
    assert target.read_text() == "third" and [p.name for p in tmp_path.iterdir()] == ["summary.md"]
    mode = stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask, "an output file gets the usual permissions, not a private temporary's"
