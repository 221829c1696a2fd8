"""Fuzz the offers importer: any CSV bytes either import or raise DataError (never another
exception); properly quoted CSV always reads back one record per row. Fast tier: a few seconds each
(an import that succeeds writes a catalogue, ~50 ms: those tests draw fewer examples)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afmrl.catalog.importers import import_offers, parse_column_mapping
from afmrl.catalog.importers.text import read_csv_records
from afmrl.config import SplitConfig
from afmrl.errors import DataError

FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
FUZZ_WRITES = settings(FUZZ, max_examples=80)
HEADER = b"sku,name,group,cost\n"
MAPPING = parse_column_mapping("id=sku,title=name,product=group,price=cost")
CSV_TOKENS = st.sampled_from([
    b"a", b"Mug", b"1", b"2.5", b"1,299.00", b"-1e999", b",", b",", b'"', b'""', b"\n", b"\n", b"\r\n", b"\r", b" ",
    b"\t", b"\x00", b"\xe9", b"\xff\xfe", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\\", b"'", b"sku,name,group,cost\n",
])  # fmt: skip


def _import(data: bytes, mapping: dict[str, str] = MAPPING) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "feed.csv", Path(tmp) / "out"
        src.write_bytes(data)
        try:
            path = import_offers(src, out, mapping, SplitConfig())
        except DataError as exc:
            assert exc.file is not None and str(exc)  # names the file
            assert not (out / "listings.parquet").exists()  # nothing written
            return
        assert path.exists()


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_import_or_raise_data_error(data):
    _import(data)


@FUZZ_WRITES
@given(st.lists(CSV_TOKENS, max_size=80).map(b"".join))
def test_csv_like_bodies_import_or_raise_data_error(body):
    _import(HEADER + body)


@FUZZ
@given(st.lists(st.lists(st.text(max_size=12), min_size=1, max_size=6), min_size=1, max_size=8))
def test_well_quoted_rows_keep_one_record_per_row(rows):
    """Properly quoted CSV (what csv.writer writes), any text in any cell: one record per row, never an error."""
    import csv
    import io

    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["sku", "name", "group", "cost"])
    rows = [(r + [""] * 4)[:4] for r in rows]
    rows = [[f"id{i}", f"t{i}{r[1]}", *r[2:]] for i, r in enumerate(rows)]  # unique ids, a non-empty title
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "feed.csv"
        src.write_text(buf.getvalue(), encoding="utf-8", newline="")
        header, records = read_csv_records(src)
    assert header == ["sku", "name", "group", "cost"]
    assert [r for _, r in records] == [dict(zip(header, r, strict=True)) for r in rows]
    # each record starts on the physical line after the header's and earlier records' lines
    # (line breaks inside quoted cells count: \r, \n and \r\n, as an editor and the csv module count them)
    expected, line = [], 2
    for r in rows:
        expected.append(line)
        one = io.StringIO(newline="")
        csv.writer(one).writerow(r)
        line += len(io.StringIO(one.getvalue(), newline="").readlines())
    assert [n for n, _ in records] == expected
