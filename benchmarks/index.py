"""Index benchmark: Milvus (through afmrl's MilvusIndex, the collection layout the pipeline uses) against
exact numpy search and faiss-cpu IndexFlatIP, on seeded clustered unit vectors.

    python benchmarks/index.py --sizes 100000 1000000 --out outputs/bench/index.json

For each size N (dimension ``index.dim`` default: ``encoder.dim`` from params.yaml, 256):
- data: N unit vectors around 1,000 cluster centres (cosine to the centre ~0.8), generated chunk by
  chunk from the seed (never all in memory outside the engines); queries: ``--queries`` near-duplicates
  of random indexed vectors (identical-product style);
- ground truth: exact inner-product top-10 with numpy, chunk by chunk (memory: one chunk);
- Milvus (default: Milvus Lite ``.db`` in a temporary folder, ``--uri`` for a server; ``--index-type``
  default ``auto``: FLAT on Lite, HNSW on a server): streamed upserts of ``--batch`` rows (insert
  vectors/s), flush + index build seconds, single-query latency p50/p95 over ``--latency-queries``
  queries, batched QPS (all queries, ``--query-batch`` per call), a category-filtered p50, recall@10
  against numpy and against faiss, peak RSS of the process that embeds Milvus Lite, disk size;
- faiss IndexFlatIP: add throughput, the same latency/QPS figures and recall against numpy.
With ``--incremental FRACTION`` (e.g. ``--sizes 100000 --incremental 0.01``) it measures the index
stage's incremental re-index instead, with the real encoder (pretrained MiniLM text tower, seeded heads)
on real text: the synthetic catalogue's listings, text-only, replicated to N (each copy a distinct
model code); a full build (embed, upsert, index every listing), then FRACTION of the listings change
(half edited, a quarter added, a quarter removed) and the same stage brings the collection up to date;
then a fresh build of the changed catalogue into another collection. The JSON holds
``incremental_ratio`` (incremental wall seconds / full wall seconds), ``matches_fresh_build`` (same ids,
vectors within 1e-4; above 20,000 listings by default the fresh build covers the edited and added
listings plus 1,000 others, ``--fresh full`` for all) and what each run embedded and deleted;
``--workers`` sets ``index.workers``.
Every engine runs in its own process so each peak RSS (ru_maxrss) is its own. A watchdog stops a phase
whose RSS passes ``--max-rss-gib`` (the result says so). Timings are wall-clock on whatever machine
runs it; the JSON records the platform, CPU count and versions. A Markdown table is printed and
written next to the JSON (``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AFMRL_PROGRESS", "off")

CHUNK = 20_000
N_CLUSTERS = 1000
SPREAD = 0.75  # noise norm relative to the unit centre
QUERY_NOISE = 0.25
TOP = 10


# ---------------------------------------------------------------------------- data (seeded, chunked)
def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def centres(dim: int, seed: int) -> np.ndarray:
    return _unit(np.random.default_rng([seed, 1]).standard_normal((N_CLUSTERS, dim)))


def chunk(c: int, n: int, dim: int, seed: int, cent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors ``c*CHUNK ..`` and their cluster ids; the same bytes every time."""
    lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
    rng = np.random.default_rng([seed, 2, c])
    k = rng.integers(0, N_CLUSTERS, hi - lo)
    x = cent[k] + (SPREAD / np.sqrt(dim)) * rng.standard_normal((hi - lo, dim)).astype(np.float32)
    return _unit(x), k


def n_chunks(n: int) -> int:
    return (n + CHUNK - 1) // CHUNK


def queries(n: int, dim: int, seed: int, n_queries: int) -> np.ndarray:
    cent = centres(dim, seed)
    rng = np.random.default_rng([seed, 3])
    rows = np.sort(rng.choice(n, n_queries, replace=False))
    base = np.empty((n_queries, dim), np.float32)
    for c in np.unique(rows // CHUNK):
        x, _ = chunk(int(c), n, dim, seed, cent)
        sel = rows // CHUNK == c
        base[sel] = x[rows[sel] - c * CHUNK]
    noise = (QUERY_NOISE / np.sqrt(dim)) * rng.standard_normal(base.shape).astype(np.float32)
    return _unit(base + noise)


def exact_topk(q: np.ndarray, n: int, dim: int, seed: int) -> tuple[np.ndarray, float]:
    """Exact top-10 ids by inner product, one chunk in memory at a time; returns (ids, search seconds)."""
    cent = centres(dim, seed)
    best_s = np.full((len(q), TOP), -np.inf, np.float32)
    best_i = np.zeros((len(q), TOP), np.int64)
    spent = 0.0
    for c in range(n_chunks(n)):
        x, _ = chunk(c, n, dim, seed, cent)
        t = time.perf_counter()
        s = q @ x.T
        ids = np.arange(c * CHUNK, c * CHUNK + len(x))
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
        part = np.argpartition(-all_s, TOP - 1, axis=1)[:, :TOP]
        best_s = np.take_along_axis(all_s, part, axis=1)
        best_i = np.take_along_axis(all_i, part, axis=1)
        spent += time.perf_counter() - t
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, axis=1), spent


def recall(found: list[list[int]] | np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(map(int, f[:TOP])) & set(t.tolist())) / TOP for f, t in zip(found, truth, strict=True)]))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def watchdog(limit_gib: float, out_file: Path) -> None:
    """Stop this process (writing why) if its RSS passes the limit: the machine is shared."""
    import psutil

    proc = psutil.Process()

    def loop() -> None:
        while True:
            rss = proc.memory_info().rss / 2**30
            if rss > limit_gib:
                out_file.write_text(json.dumps({"aborted": f"RSS {rss:.2f} GiB above --max-rss-gib {limit_gib}"}))
                os._exit(3)
            time.sleep(0.2)

    threading.Thread(target=loop, daemon=True).start()


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "single_qps": round(1000 / float(np.mean(ms)), 2)}  # fmt: skip


# ---------------------------------------------------------------------------- phases (own processes)
def phase_milvus(a: argparse.Namespace) -> dict:
    from afmrl.retrieval.milvus import MilvusIndex

    n, dim, seed = a.size, a.dim, a.seed
    work = Path(a.workdir)
    uri = a.uri or str(work / "bench.db")
    q = np.load(a.queries_file)
    cent = centres(dim, seed)
    name = f"bench_{n}_{dim}"
    with MilvusIndex(uri, os.environ.get("MILVUS_TOKEN"), index_type=a.index_type, metric="IP") as ix:
        if ix.has(name):
            ix.drop(name)
        ix.ensure_collection(name, dim)
        upsert_s, t_all = 0.0, time.perf_counter()
        prices = np.random.default_rng([seed, 4]).uniform(1, 100, n)
        for c in range(n_chunks(n)):
            x, k = chunk(c, n, dim, seed, cent)
            base = c * CHUNK
            for lo in range(0, len(x), a.batch):
                recs = [{"listing_id": f"v{base + i:07d}", "product_id": f"c{k[i]}", "category": f"cat{k[i] % 20}",
                         "title": None, "split": "gallery", "attributes": None, "price": float(prices[base + i]),
                         "content_hash": "", "vector": x[i]} for i in range(lo, min(len(x), lo + a.batch))]  # fmt: skip
                t = time.perf_counter()
                ix.upsert(name, recs)
                upsert_s += time.perf_counter() - t
        insert_wall = time.perf_counter() - t_all
        t = time.perf_counter()
        ix.flush(name)
        flush_s = time.perf_counter() - t
        count = ix.count(name)
        rss_after_insert = peak_rss_gib()
        # reopen as a serving process would: load from disk
        ix.client.release_collection(name)
        ix._loaded.discard(name)
        t = time.perf_counter()
        ix.load(name)
        load_s = time.perf_counter() - t
        ix.search(name, q[:1], TOP)  # warm-up
        lat = []
        for v in q[: a.latency_queries]:
            t = time.perf_counter()
            ix.search(name, v, TOP)
            lat.append(time.perf_counter() - t)
        flat = []
        for i, v in enumerate(q[: max(5, a.latency_queries // 5)]):
            t = time.perf_counter()
            ix.search(name, v, TOP, f'category == "cat{i % 20}"')
            flat.append(time.perf_counter() - t)
        found: list[list[int]] = []
        t = time.perf_counter()
        for lo in range(0, len(q), a.query_batch):
            found += [[int(h.listing_id[1:]) for h in row] for row in ix.search(name, q[lo : lo + a.query_batch], TOP)]
        batch_s = time.perf_counter() - t
        engine = f"{'Milvus Lite' if ix.lite else 'Milvus server'} {ix.index_type}"
    disk = sum(p.stat().st_size for p in Path(uri).rglob("*") if p.is_file()) if not a.uri else None
    np.save(work / "milvus_ids.npy", np.asarray(found, dtype=np.int64))
    return {"engine": engine, "count": count,
            "insert_vectors_per_s": round(n / upsert_s, 1), "insert_wall_vectors_per_s": round(n / insert_wall, 1),
            "flush_index_s": round(flush_s, 2), "load_s": round(load_s, 2), **latency_stats(lat),
            "filtered_p50_ms": round(float(np.percentile(np.asarray(flat) * 1000, 50)), 2),
            "batched_qps": round(len(q) / batch_s, 2), "query_batch": a.query_batch,
            "peak_rss_gib": round(peak_rss_gib(), 3), "rss_after_insert_gib": round(rss_after_insert, 3),
            "disk_gib": round(disk / 2**30, 3) if disk is not None else None}  # fmt: skip


def phase_faiss(a: argparse.Namespace) -> dict:
    import faiss

    n, dim, seed = a.size, a.dim, a.seed
    q = np.load(a.queries_file)
    cent = centres(dim, seed)
    index = faiss.IndexFlatIP(dim)
    add_s = 0.0
    for c in range(n_chunks(n)):
        x, _ = chunk(c, n, dim, seed, cent)
        t = time.perf_counter()
        index.add(x)
        add_s += time.perf_counter() - t
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query at a time: OpenMP wake-ups cost more than they save
    index.search(q[:1], TOP)
    lat = []
    for v in q[: a.latency_queries]:
        t = time.perf_counter()
        index.search(v[None, :], TOP)
        lat.append(time.perf_counter() - t)
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    _, ids = index.search(q, TOP)
    batch_s = time.perf_counter() - t
    np.save(Path(a.workdir) / "faiss_ids.npy", ids)
    return {"engine": f"faiss IndexFlatIP (latency 1 thread, batch {threads})", "count": int(index.ntotal),
            "insert_vectors_per_s": round(n / add_s, 1), **latency_stats(lat),
            "batched_qps": round(len(q) / batch_s, 2), "query_batch": len(q),
            "peak_rss_gib": round(peak_rss_gib(), 3)}  # fmt: skip


def phase_exact(a: argparse.Namespace) -> dict:
    q = np.load(a.queries_file)
    ids, spent = exact_topk(q, a.size, a.dim, a.seed)
    np.save(Path(a.workdir) / "exact_ids.npy", ids)
    return {"engine": f"numpy exact (chunks of {CHUNK:,})", "count": a.size, "batched_qps": round(len(q) / spent, 2),
            "query_batch": len(q), "peak_rss_gib": round(peak_rss_gib(), 3)}  # fmt: skip


PHASES = {"milvus": phase_milvus, "faiss": phase_faiss, "exact": phase_exact}


def run_phase(phase: str, a: argparse.Namespace, size: int, workdir: Path, queries_file: Path) -> dict:
    out = workdir / f"{phase}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--phase", phase, "--size", str(size), "--workdir", str(workdir),
           "--queries-file", str(queries_file), "--phase-out", str(out), "--dim", str(a.dim), "--seed", str(a.seed),
           "--batch", str(a.batch), "--latency-queries", str(a.latency_queries), "--query-batch", str(a.query_batch),
           "--index-type", a.index_type, "--max-rss-gib", str(a.max_rss_gib)] + (["--uri", a.uri] if a.uri else [])  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.run(cmd, text=True, capture_output=True)
    wall = time.perf_counter() - t
    if out.exists():
        res = json.loads(out.read_text())
    else:
        res = {"aborted": f"exit code {proc.returncode}: {proc.stderr[-2000:]}"}
    res["phase_wall_s"] = round(wall, 1)
    print(f"  {phase:6s} n={size:,}: {json.dumps(res)}", flush=True)
    return res


def markdown(results: list[dict], dim: int) -> str:
    head = ("| vectors | engine | insert vec/s | flush+index s | p50 ms | p95 ms | filtered p50 ms | QPS batched | "
            "QPS 1 query at a time | recall@10 vs numpy | recall@10 vs faiss | peak RSS GiB |")  # fmt: skip
    lines = [f"Dimension {dim}, inner product on unit vectors, top-10.", "", head, "|" + "---|" * 12]

    def f(v, fmt="{:,.0f}"):
        return "-" if v is None else fmt.format(v) if isinstance(v, int | float) else str(v)

    for size in results:
        for r in size["engines"]:
            if "aborted" in r:
                lines.append(f"| {size['size']:,} | {r.get('engine', '?')} | aborted: {r['aborted'][:80]} |" + " |" * 9)
                continue
            lines.append(
                f"| {size['size']:,} | {r['engine']} | {f(r.get('insert_vectors_per_s'))} | "
                f"{f(r.get('flush_index_s'), '{:.1f}')} | {f(r.get('p50_ms'), '{:.1f}')} | {f(r.get('p95_ms'), '{:.1f}')} | "
                f"{f(r.get('filtered_p50_ms'), '{:.1f}')} | {f(r.get('batched_qps'), '{:,.1f}')} | "
                f"{f(r.get('single_qps'), '{:,.1f}')} | {f(r.get('recall_vs_exact'), '{:.3f}')} | "
                f"{f(r.get('recall_vs_faiss'), '{:.3f}')} | {f(r.get('peak_rss_gib'), '{:.2f}')} |"
            )  # fmt: skip
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- incremental re-index
def text_catalogue(n: int, out: Path, seed: int) -> Path:
    """N text-only listings made from the synthetic catalogue's real listing texts (copy j of a listing
    gets the model code ``M<j>`` in its title and its own ids), written as a catalogue folder."""
    import pandas as pd

    from afmrl.catalog import read_catalog, write_catalog
    from afmrl.catalog.synth import generate
    from afmrl.config import load_config

    cfg = load_config(None, [f"synth.seed={seed}", "synth.n_base_products=40", "synth.image_size=48"])
    base_dir = out / "synth"
    generate(cfg.synth, cfg.splits, base_dir)
    base = read_catalog(base_dir).listings.assign(image=None)
    copies = (n + len(base) - 1) // len(base)
    parts = []
    for j in range(copies):
        part = base.copy()
        part["listing_id"] = part["listing_id"] + f"-c{j}"
        part["product_id"] = part["product_id"] + f"-c{j}"
        part["title"] = part["title"] + f" M{j:05d}"
        parts.append(part)
    listings = pd.concat(parts, ignore_index=True).iloc[:n].reset_index(drop=True)
    write_catalog(listings, out / "full", image_root=out / "full")
    return out / "full"


def change_catalogue(src: Path, out: Path, fraction: float, seed: int) -> dict[str, int]:
    """``fraction`` of the listings change: half edited (title and price), a quarter removed, a quarter
    added (new ids, new texts)."""
    import pandas as pd

    from afmrl.catalog import read_catalog, write_catalog

    df = read_catalog(src).listings
    rng = np.random.default_rng([seed, 5])
    n_change = max(4, round(len(df) * fraction))
    n_edit, n_remove = n_change // 2, n_change // 4
    n_add = n_change - n_edit - n_remove
    picked = rng.choice(len(df), n_edit + n_remove, replace=False)
    edit, remove = picked[:n_edit], picked[n_edit:]
    df = df.copy()
    df.loc[edit, "title"] = df.loc[edit, "title"] + " (new edition)"
    df.loc[edit, "price"] = df.loc[edit, "price"].fillna(10.0) + 1.0
    added = df.iloc[rng.choice(len(df), n_add, replace=False)].copy()
    added["listing_id"] = [f"new-{i:06d}" for i in range(n_add)]
    added["title"] = added["title"] + " bundle"
    df = pd.concat([df.drop(index=remove), added], ignore_index=True)
    write_catalog(df, out, image_root=out)
    return {"edited": int(n_edit), "removed": int(n_remove), "added": int(n_add), "listings": len(df)}


def fresh_sample(changed: Path, out: Path, seed: int, n_unchanged: int = 1000) -> Path:
    """The changed catalogue's edited and added listings plus ``n_unchanged`` others (a fresh build of this
    sub-catalogue gives the vectors a fresh build of the whole would give them)."""
    from afmrl.catalog import read_catalog, write_catalog

    df = read_catalog(changed).listings
    touched = df["listing_id"].str.startswith("new-") | df["title"].str.endswith("(new edition)")
    rest = df.index[~touched].to_numpy()
    pick = np.random.default_rng([seed, 6]).choice(rest, min(n_unchanged, len(rest)), replace=False)
    write_catalog(df[touched | df.index.isin(pick)].reset_index(drop=True), out, image_root=out)
    return out


def collection_vectors(ix, name: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for page in ix.iter_fields(name, ("vector",), batch_size=5000):
        for r in page:
            out[r["listing_id"]] = np.asarray(r["vector"], dtype=np.float32)
    return out


def incremental_benchmark(a: argparse.Namespace, size: int, work: Path) -> dict:
    import torch

    from afmrl.config import EncoderConfig, load_config
    from afmrl.models.encoders.dual import DualEncoder
    from afmrl.retrieval.milvus import MilvusIndex
    from afmrl.stages import index as index_stage

    load_before = os.getloadavg()
    t = time.perf_counter()
    full_cat = text_catalogue(size, work, a.seed)
    changes = change_catalogue(full_cat, work / "changed", a.incremental, a.seed)
    catalogue_s = time.perf_counter() - t
    torch.manual_seed(a.seed)
    encoder = DualEncoder(EncoderConfig(dim=a.dim, attributes_source="provided")).save_pretrained(work / "encoder")  # pretrained towers, seeded heads
    db = work / "index.db"
    sets = ["tracking.enabled=false", f"index.uri={db}", f"index.workers={a.workers}", "encoder.attributes_source=provided"]
    cfg = load_config(None, sets)
    runs = {}
    fresh_mode = a.fresh or ("full" if size <= 20_000 else "sample")
    fresh_cat = work / "changed" if fresh_mode == "full" else fresh_sample(work / "changed", work / "fresh-sample", a.seed)
    for label, catalogue, extra in (("full", full_cat, []), ("incremental", work / "changed", []),
                                    ("fresh", fresh_cat, ["index.version=fresh"])):  # fmt: skip
        c = load_config(None, [*sets, *extra]) if extra else cfg
        t = time.perf_counter()
        r = index_stage.run(c, catalogue, encoder, work / f"out-{label}")
        wall = time.perf_counter() - t
        runs[label] = {"wall_s": round(wall, 2), "stage_s": r.seconds, "plan_s": r.details.get("plan_seconds"),
                       "embedded": r.embedded, "added": r.added, "changed": r.changed, "unchanged": r.unchanged,
                       "deleted": r.deleted, "count": r.count, "collection": r.collection, "workers": r.workers}  # fmt: skip
        print(f"  {label:11s} n={size:,}: {json.dumps(runs[label])}", flush=True)
    with MilvusIndex(str(db)) as ix:
        inc = collection_vectors(ix, runs["incremental"]["collection"])
        fresh = collection_vectors(ix, runs["fresh"]["collection"])
    from afmrl.catalog import read_catalog

    changed_ids = set(read_catalog(work / "changed").listings["listing_id"])
    # a fresh build holds exactly the catalogue's ids (its count check); "sample": the fresh build covers every
    # edited and added listing plus a sample of the unchanged ones, and their vectors are compared
    same_ids = set(inc) == changed_ids and set(fresh) <= changed_ids
    if fresh_mode == "full":
        same_ids = same_ids and set(fresh) == changed_ids
    max_diff = max((float(np.abs(inc[k] - fresh[k]).max()) for k in fresh if k in inc), default=float("inf"))
    inc_run = runs["incremental"]
    expected = {"embedded": changes["edited"] + changes["added"], "deleted": changes["removed"]}
    return {
        "size": size, "fraction": a.incremental, "changes": changes, "runs": runs,
        "incremental_ratio": round(inc_run["wall_s"] / runs["full"]["wall_s"], 4),
        "matches_fresh_build": bool(same_ids and max_diff <= 1e-4), "max_vector_abs_diff": max_diff,
        "embedded_only_the_changes": inc_run["embedded"] == expected["embedded"] and inc_run["deleted"] == expected["deleted"],
        "fresh_build": fresh_mode, "fresh_compared": len(fresh), "expected": expected, "full_listings_per_s": round(size / runs["full"]["wall_s"], 1),
        "catalogue_s": round(catalogue_s, 1), "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()], "torch_threads": torch.get_num_threads(),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=None, help="default: encoder.dim from params.yaml")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--latency-queries", type=int, default=50)
    ap.add_argument("--query-batch", type=int, default=50)
    ap.add_argument("--batch", type=int, default=2000, help="rows per upsert")
    ap.add_argument("--index-type", default="auto")
    ap.add_argument("--uri", default=None, help="Milvus server URI (token: MILVUS_TOKEN); default: Lite in a temp dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rss-gib", type=float, default=8.0, help="stop a phase above this RSS")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: outputs/bench/index.json (--incremental: outputs/bench/index-incremental.json)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--incremental", type=float, default=None,
                    help="measure the incremental re-index at this change fraction (e.g. 0.01) instead of the engines")
    ap.add_argument("--fresh", choices=["full", "sample"], default=None,
                    help="--incremental: the fresh build to compare with: the whole changed catalogue, or its "
                         "edited/added listings plus 1,000 others (default: full up to 20,000 listings)")
    ap.add_argument("--workers", type=int, default=1, help="--incremental: index.workers (local embedding processes)")
    # internal: one phase in its own process
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--queries-file", help=argparse.SUPPRESS)
    ap.add_argument("--phase-out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.dim is None:
        from afmrl.config import load_config

        a.dim = load_config(Path(__file__).resolve().parents[1] / "params.yaml").encoder.dim
    if a.phase:
        watchdog(a.max_rss_gib, a.phase_out)
        res = PHASES[a.phase](a)
        a.phase_out.write_text(json.dumps(res))
        return

    if a.incremental is not None:
        a.out = a.out or Path("outputs/bench/index-incremental.json")
        return main_incremental(a)
    a.out = a.out or Path("outputs/bench/index.json")

    import faiss

    from afmrl.retrieval.milvus import import_pymilvus

    pymilvus = import_pymilvus()  # not a plain import: pymilvus would read MILVUS_URI (see afmrl/retrieval/milvus.py)

    results = []
    root = Path(a.workdir or tempfile.mkdtemp(prefix="afmrl-bench-index-"))
    try:
        for size in a.sizes:
            work = root / f"n{size}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            qfile = work / "queries.npy"
            np.save(qfile, queries(size, a.dim, a.seed, a.queries))
            print(f"n={size:,} dim={a.dim} queries={a.queries}", flush=True)
            engines = {p: run_phase(p, a, size, work, qfile) for p in ("exact", "faiss", "milvus")}
            truth = np.load(work / "exact_ids.npy")
            faiss_ids = np.load(work / "faiss_ids.npy") if (work / "faiss_ids.npy").exists() else None
            if faiss_ids is not None:
                engines["faiss"]["recall_vs_exact"] = recall(faiss_ids, truth)
            if (work / "milvus_ids.npy").exists():
                m = np.load(work / "milvus_ids.npy")
                engines["milvus"]["recall_vs_exact"] = recall(m, truth)
                if faiss_ids is not None:
                    engines["milvus"]["recall_vs_faiss"] = recall(m, faiss_ids)
            results.append({"size": size, "engines": [engines["milvus"], engines["faiss"], engines["exact"]]})
            shutil.rmtree(work / "bench.db", ignore_errors=True)
    finally:
        if a.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    report = {"dim": a.dim, "queries": a.queries, "latency_queries": a.latency_queries, "index_type": a.index_type,
              "backend": "server" if a.uri else "Milvus Lite (in-process)", "results": results,
              "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                           "pymilvus": pymilvus.__version__, "faiss": faiss.__version__,
                           "milvus_lite": _milvus_lite_version()},
              "command": " ".join(sys.argv)}  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(results, a.dim)
    a.out.with_suffix(".md").write_text(md)
    print("\n" + md)
    print(f"results: {a.out} and {a.out.with_suffix('.md')}")


def main_incremental(a: argparse.Namespace) -> None:
    root = Path(a.workdir or tempfile.mkdtemp(prefix="afmrl-bench-incremental-"))
    results = []
    t = time.perf_counter()
    try:
        for size in a.sizes:
            work = root / f"n{size}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            print(f"incremental re-index n={size:,} fraction={a.incremental}", flush=True)
            results.append(incremental_benchmark(a, size, work))
    finally:
        if a.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    last = results[-1]
    report = {"incremental_ratio": last["incremental_ratio"], "matches_fresh_build": last["matches_fresh_build"],
              "goal": "incremental_ratio <= 0.05", "results": results, "dim": a.dim, "total_s": round(time.perf_counter() - t, 1),
              "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
              "command": " ".join(sys.argv)}  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        full, inc = r["runs"]["full"], r["runs"]["incremental"]
        print(f"n={r['size']:,}: full {full['wall_s']} s ({r['full_listings_per_s']} listings/s), incremental "
              f"{inc['wall_s']} s (embedded {inc['embedded']}, deleted {inc['deleted']}): ratio {r['incremental_ratio']}, "
              f"matches fresh build: {r['matches_fresh_build']}")  # fmt: skip
    print(f"results: {a.out}")


def _milvus_lite_version() -> str | None:
    try:
        import milvus_lite

        return milvus_lite.__version__
    except ImportError:
        return None


if __name__ == "__main__":
    main()
