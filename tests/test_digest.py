"""The digests are persisted (generation-cache keys, encoder fingerprints and so index collection names,
index content hashes, checkpoint fingerprints, dataset digests): these values must not drift. They are
the values the per-module helpers computed before they became :mod:`afmrl.digest`."""

from __future__ import annotations

import hashlib

from afmrl.digest import BIG_FILE, content_hash, digest_bytes, file_digest, folder_digest


def _folder(root):
    root.mkdir()
    (root / "config.json").write_text('{"afmrl_encoder": "dual"}')
    (root / "sub").mkdir()
    (root / "sub" / "w.bin").write_bytes(bytes(range(256)))
    return root


def test_pinned_values(tmp_path):
    folder = _folder(tmp_path / "enc")
    assert content_hash("red mug", None, b"\x00\x01", {"b": 1, "a": "é"}) == (
        "30cb16230caded2a979fe1be0aae21e2f021dd8101f9471f67f3ae1cd4c3aee9")  # fmt: skip
    assert file_digest(folder / "sub" / "w.bin") == hashlib.sha256(bytes(range(256))).hexdigest()
    assert folder_digest(folder) == "397e70cd2b93c6956be2d4f7e7b924d2d857d6b2e086fa3fb553371753d1b852"
    assert folder_digest(folder, extra={"kind": "clip"}) == (
        "03c03f632d03787f9bfd0cb14a72c8aff5ccfe46b860a2a8148502025d63c76c")  # fmt: skip
    assert digest_bytes("k", algorithm="blake2b", size=16) == hashlib.blake2b(b"k", digest_size=16).hexdigest()
    assert digest_bytes("a", b"b") == hashlib.sha256(b"ab").hexdigest()


def test_folder_digest_sees_names_contents_and_big_files_by_head_and_tail(tmp_path):
    folder = _folder(tmp_path / "enc")
    before = folder_digest(folder)
    (folder / "sub" / "w.bin").rename(folder / "sub" / "v.bin")
    assert folder_digest(folder) != before
    big = folder / "big.bin"
    big.write_bytes(b"\0" * (BIG_FILE + 1))
    with_big = folder_digest(folder)
    with big.open("r+b") as f:  # the middle of a big file is not read
        f.seek(BIG_FILE // 2)
        f.write(b"x")
    assert folder_digest(folder) == with_big
    with big.open("r+b") as f:
        f.seek(BIG_FILE)
        f.write(b"x")
    assert folder_digest(folder) != with_big
