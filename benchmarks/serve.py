"""Serving benchmark: latency of `afmrl serve` over HTTP at a given catalogue size, self-contained.

    python benchmarks/serve.py --listings 100000 --out serve.json

Run from any folder. In a temporary folder (``--workdir`` to keep it) it builds what it needs:
- a synthetic catalogue (``--base-products`` base products, their near-duplicates and sellers; real
  images and titles), embedded and indexed by the index stage with an encoder (``--encoder`` a trained
  folder, else a fresh one: the pretrained towers with new heads; latency does not depend on the weights);
- scaled to ``--listings`` by adding seller copies of the real listings (fields copied, ids suffixed,
  vectors jittered around the real ones and re-normalised) straight into the same collection, flushed;
- its own MLflow store (SQLite) with the encoder registered and ``champion`` on it, and its own Milvus
  Lite file with the serving alias on the collection (as after the README's first command);
then starts ``afmrl serve`` as a subprocess on a free port, drives it over HTTP (keep-alive connections)
and stops it:
- ``text``: one client, ``--queries`` text queries (catalogue titles, shuffled words) -> p50 / p99 ms;
- ``text_8_clients``: 8 clients for ``--concurrent-seconds`` -> QPS and p50;
- ``photo``: one client, ``--photo-queries`` JPEG uploads (catalogue images) -> p50 / p99.
Each carries the server's own split (medians): ``encode_ms``, ``search_ms`` (the Milvus call), and
``overhead_ms`` (client latency minus both: HTTP, parsing, attribute comparison, JSON).
``milvus_probe`` (after the service stopped, in this process, on the same file) times the Milvus call
alone: ids only vs the page's fields vs with a filter, and a numpy scan of the same vectors (the
arithmetic floor), and profiles Milvus Lite's Search handler (where a query's time goes inside it).
The JSON also records the machine (CPU count, load from ``uptime`` before and after), versions and
every setting. A Markdown table is printed and written next to the JSON (``.md``).
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import platform
import pstats
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AFMRL_PROGRESS", "off")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

NAME = "afmrl-encoder"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"loadavg {os.getloadavg()}"


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- build
def scan(ix: Any, collection: str, fields: tuple[str, ...], batch: int = 5000) -> Any:
    """Every row's listing_id and ``fields``, page by page."""
    ix.load(collection)
    it = ix.client.query_iterator(collection, batch_size=batch, filter="", output_fields=["listing_id", *fields])
    try:
        while page := it.next():
            yield [dict(r) for r in page]
    finally:
        it.close()


def build(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Catalogue -> index (real embeddings) -> scaled collection -> registry champion + serving alias."""
    import mlflow
    from mlflow import MlflowClient

    from afmrl.catalog.synth import generate
    from afmrl.config import EncoderConfig, load_config
    from afmrl.models.encoders.dual import DualEncoder
    from afmrl.retrieval.milvus import MilvusIndex
    from afmrl.stages import index as index_stage
    from afmrl.stages.index import switch_alias

    overrides = [f"tracking.uri=sqlite:///{work / 'mlflow.db'}", f"index.uri={work / 'milvus.db'}",
                 f"synth.n_base_products={args.base_products}", f"synth.seed={args.seed}"]  # fmt: skip
    cfg = load_config(None, overrides)
    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(args.build_threads)  # 2 threads spinning against other work on 2 busy cores: 10x slower
    catalog = work / "catalog"
    generate(cfg.synth, cfg.splits, catalog)
    log(f"catalogue: {catalog}")
    if args.encoder:
        encoder = Path(args.encoder).resolve()
    else:
        torch.manual_seed(args.seed)
        encoder = DualEncoder(EncoderConfig()).save_pretrained(work / "encoder")  # fresh heads, pretrained towers
    result = index_stage.run(cfg, catalog, encoder, work / "index")
    log(f"indexed {result.count} real listings into {result.collection} in {result.seconds:.1f} s")
    real = result.count
    t_scale = time.perf_counter()
    with MilvusIndex.from_config(cfg.index) as ix:
        base: list[dict[str, Any]] = []
        fields = ("product_id", "category", "title", "split", "attributes", "price", "content_hash", "vector")
        for page in scan(ix, result.collection, fields):
            base.extend(page)
        rng = np.random.default_rng(args.seed)
        todo = max(0, args.listings - real)
        batch: list[dict[str, Any]] = []
        done = 0
        for j in range(todo):
            src = base[j % len(base)]
            v = np.asarray(src["vector"], dtype=np.float32)
            v = v + (args.jitter / np.sqrt(len(v))) * rng.standard_normal(len(v)).astype(np.float32)
            batch.append({**{k: src[k] for k in fields if k != "vector"}, "listing_id": f"{src['listing_id']}~{j}",
                          "vector": v / np.linalg.norm(v)})  # fmt: skip
            if len(batch) == 5000 or j == todo - 1:
                ix.upsert(result.collection, batch)
                done += len(batch)
                batch = []
                if done % 20000 == 0 or done == todo:
                    log(f"scaled: {real + done:,} listings")
        t_flush = time.perf_counter()
        ix.flush(result.collection)
        flush_s = time.perf_counter() - t_flush
        count = ix.count(result.collection)
        ix.set_properties(result.collection, {"afmrl.count": count})
    log(f"collection holds {count:,} listings (scaled in {time.perf_counter() - t_scale:.1f} s, flush {flush_s:.1f} s)")
    mlflow.set_tracking_uri(cfg.tracking.resolved_uri())
    client = MlflowClient()
    experiment = client.create_experiment("afmrl-serve-bench", artifact_location=(work / "mlartifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)  # artifacts in the work folder, not the caller's
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(encoder), "encoder")
    client.create_registered_model(NAME)
    mv = client.create_model_version(NAME, source=f"{run.info.artifact_uri}/encoder", run_id=run.info.run_id)
    client.set_registered_model_alias(NAME, "champion", mv.version)
    switch_alias(cfg, collection=result.collection)  # what publish does after the gate
    return {"overrides": overrides, "catalog": str(catalog), "collection": result.collection, "count": count,
            "real_listings": real, "encoder": str(encoder), "encoder_kind": "given" if args.encoder else "fresh",
            "dim": result.dim, "build_s": round(time.perf_counter() - t0, 1), "flush_s": round(flush_s, 1)}  # fmt: skip


# ---------------------------------------------------------------------------- the service
def start_service(work: Path, overrides: list[str], threads: int | None) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    sets = [a for o in overrides for a in ("--set", o)]
    if threads:
        sets += ["--set", f"serve.torch_threads={threads}"]  # else the config's default (1)
    out = (work / "serve.log").open("w")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "afmrl.cli", *sets, "--set", "serve.follow_interval_s=0",
                             "serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=work)  # fmt: skip
    deadline = time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"afmrl serve exited {proc.returncode}:\n{(work / 'serve.log').read_text()[-4000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port, time.perf_counter() - t
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"afmrl serve did not become healthy:\n{(work / 'serve.log').read_text()[-4000:]}")


def stop_service(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.conn.connect()
        # http.client writes the headers and the body in two send() calls: with Nagle's algorithm on, the
        # body waits for the server's delayed ACK of the headers (~40 ms per request on Linux). Browsers and
        # HTTP libraries set TCP_NODELAY; so does this client (the server side, asyncio, already does).
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, body: bytes, ctype: str) -> tuple[float, dict[str, Any]]:
        t = time.perf_counter()
        self.conn.request("POST", "/search", body=body, headers={"Content-Type": ctype})
        r = self.conn.getresponse()
        data = r.read()
        ms = (time.perf_counter() - t) * 1e3
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
        return ms, json.loads(data)


def text_body(text: str, k: int) -> tuple[bytes, str]:
    return json.dumps({"text": text, "k": k}).encode(), "application/json"


def photo_body(jpeg: bytes, k: int) -> tuple[bytes, str]:
    boundary = "afmrlbench" + os.urandom(8).hex()
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n{k}\r\n".encode(),
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
             "Content-Type: image/jpeg\r\n\r\n".encode(), jpeg, f"\r\n--{boundary}--\r\n".encode()]  # fmt: skip
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def summarise(latencies: list[float], timings: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(latencies), "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99),
                           "mean_ms": round(float(np.mean(latencies)), 2)}  # fmt: skip
    if timings:
        enc = [t["encode_ms"] for t in timings]
        srch = [t["search_ms"] for t in timings]
        over = [lat - t["encode_ms"] - t["search_ms"] for lat, t in zip(latencies, timings, strict=True)]
        out["breakdown"] = {"encode_ms": pct(enc, 50), "search_ms": pct(srch, 50), "overhead_ms": pct(over, 50),
                            "server_total_ms": pct([t["total_ms"] for t in timings], 50),
                            "search_p99_ms": pct(srch, 99), "encode_p99_ms": pct(enc, 99)}  # fmt: skip
    return out


def one_client(port: int, bodies: list[tuple[bytes, str]], warmup: int) -> dict[str, Any]:
    c = Client(port)
    for body, ctype in bodies[:warmup]:
        c.post(body, ctype)
    lat, tim = [], []
    for body, ctype in bodies[warmup:]:
        ms, res = c.post(body, ctype)
        lat.append(ms)
        tim.append(res["timing"])
    return summarise(lat, tim)


def many_clients(port: int, bodies: list[tuple[bytes, str]], clients: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    tim: list[dict[str, float]] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    errors: list[str] = []

    def worker(i: int) -> None:
        c = Client(port)
        n = i
        while time.perf_counter() < stop:
            body, ctype = bodies[n % len(bodies)]
            n += clients
            try:
                ms, res = c.post(body, ctype)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(str(exc))
                c = Client(port)
                continue
            with lock:
                lat.append(ms)
                tim.append(res["timing"])

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    out = summarise(lat, tim)
    out.update({"clients": clients, "seconds": round(wall, 1), "qps": round(len(lat) / wall, 2), "errors": len(errors)})
    return out


def queries(catalog: Path, n: int, seed: int) -> list[str]:
    import pandas as pd

    titles = pd.read_parquet(catalog / "listings.parquet", columns=["title"])["title"].dropna().tolist()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = str(titles[rng.randrange(len(titles))]).split()
        if i % 2:
            rng.shuffle(words)  # a shopper's wording, not a stored title
        out.append(" ".join(words[: max(3, len(words) - rng.randrange(3))]))
    return out


def photos(catalog: Path, n: int, seed: int) -> list[bytes]:
    import pandas as pd
    from PIL import Image

    df = pd.read_parquet(catalog / "listings.parquet", columns=["image"]).dropna()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        img = Image.open(catalog / df["image"].iloc[rng.randrange(len(df))]).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


# ---------------------------------------------------------------------------- Milvus alone
def milvus_probe(overrides: list[str], collection: str, n: int, seed: int) -> dict[str, Any]:
    """The Milvus call alone, in this process, on the file the service used (after it stopped)."""
    from afmrl.config import load_config
    from afmrl.retrieval.milvus import MilvusIndex
    from afmrl.serving.searcher import SHOWN_FIELDS
    from afmrl.serving.server import limit_threads

    cfg = load_config(None, overrides)
    out: dict[str, Any] = {}
    with MilvusIndex.from_config(cfg.index) as ix:
        t = time.perf_counter()
        ix.load(collection)
        out["load_s"] = round(time.perf_counter() - t, 2)
        vecs: list[np.ndarray] = []
        for page in scan(ix, collection, ("vector",)):
            vecs.extend(np.asarray(r["vector"], np.float32) for r in page)
        mat = np.stack(vecs)
        rng = np.random.default_rng(seed)
        qs = mat[rng.choice(len(mat), n, replace=False)]
        c = ix.client

        def timed(fn) -> float:  # noqa: ANN001
            fn(qs[0])
            ts = []
            for q in qs[1:]:
                t = time.perf_counter()
                fn(q)
                ts.append((time.perf_counter() - t) * 1e3)
            return pct(ts, 50)

        sp = {"params": {}}
        out["numpy_scan_default_blas_threads_p50_ms"] = timed(lambda q: np.argpartition(-(mat @ q), 10)[:10])
        limit_threads(cfg)  # as the service does (serve.blas_threads)
        out["ids_only_p50_ms"] = timed(lambda q: c.search(collection, data=[q.tolist()], limit=10, anns_field="vector",
                                                          search_params=sp))  # fmt: skip
        out["page_fields_p50_ms"] = timed(lambda q: c.search(collection, data=[q.tolist()], limit=10, anns_field="vector",
                                                             search_params=sp, output_fields=list(SHOWN_FIELDS)))  # fmt: skip
        out["page_fields_strong_p50_ms"] = timed(lambda q: c.search(
            collection, data=[q.tolist()], limit=10, anns_field="vector", search_params=sp,
            output_fields=list(SHOWN_FIELDS), consistency_level="Strong"))  # fmt: skip
        out["with_filter_p50_ms"] = timed(lambda q: c.search(collection, data=[q.tolist()], limit=10, anns_field="vector",
                                                             search_params=sp, filter='listing_id != "x"'))  # fmt: skip
        out["numpy_scan_p50_ms"] = timed(lambda q: np.argpartition(-(mat @ q), 10)[:10])
        if ix.lite:  # where a query's time goes inside Milvus Lite's engine (Collection.search, profiled)
            from milvus_lite.engine import collection as lite_collection

            prof = cProfile.Profile()
            original = lite_collection.Collection.search
            engine_ms: list[float] = []

            def profiled(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
                t = time.perf_counter()
                prof.enable()
                try:
                    return original(self, *a, **kw)
                finally:
                    prof.disable()
                    engine_ms.append((time.perf_counter() - t) * 1e3)

            lite_collection.Collection.search = profiled
            calls = min(20, len(qs))
            client_ms = []
            try:
                for q in qs[:calls]:
                    t = time.perf_counter()
                    c.search(collection, data=[q.tolist()], limit=10, anns_field="vector", search_params=sp,
                             output_fields=list(SHOWN_FIELDS))  # fmt: skip
                    client_ms.append((time.perf_counter() - t) * 1e3)
            finally:
                lite_collection.Collection.search = original
            out["lite_engine_p50_ms_profiled"] = pct(engine_ms, 50)
            out["lite_client_p50_ms_profiled"] = pct(client_ms, 50)
            stats = pstats.Stats(prof)
            rows = []
            for (file, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
                rows.append({"function": f"{Path(file).name}:{line}:{func}", "self_ms_per_query": round(tottime * 1e3 / calls, 2),
                             "cum_ms_per_query": round(cumtime * 1e3 / calls, 2), "calls_per_query": round(ncalls / calls, 1)})  # fmt: skip
            rows.sort(key=lambda r: -r["self_ms_per_query"])
            out["lite_profile_top_self_time"] = rows[:12]
    return out


# ---------------------------------------------------------------------------- main
def table(result: dict[str, Any]) -> str:
    rows = ["| workload | p50 ms | p99 ms | QPS | encode ms | Milvus search ms | overhead ms |", "|---|---|---|---|---|---|---|"]
    for key, label in (("text", "text, 1 client"), ("text_8_clients", "text, 8 clients"), ("photo", "photo, 1 client")):
        r = result.get(key)
        if not r:
            continue
        b = r.get("breakdown", {})
        qps = r.get("qps", round(1000 / r["mean_ms"], 2) if r.get("mean_ms") else "")
        rows.append(f"| {label} | {r['p50_ms']} | {r['p99_ms']} | {qps} | {b.get('encode_ms', '')} | "
                    f"{b.get('search_ms', '')} | {b.get('overhead_ms', '')} |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listings", type=int, default=100_000, help="listings in the served collection")
    ap.add_argument("--out", type=Path, default=Path("serve.json"))
    ap.add_argument("--encoder", help="a trained encoder folder (default: a fresh one)")
    ap.add_argument("--build-threads", type=int, default=1, help="torch threads while embedding the catalogue")
    ap.add_argument("--base-products", type=int, default=30, help="synthetic base products (real embedded listings)")
    ap.add_argument("--queries", type=int, default=300, help="single-client text queries (after 10 warm-up)")
    ap.add_argument("--photo-queries", type=int, default=100)
    ap.add_argument("--concurrent-seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--jitter", type=float, default=0.5, help="noise norm of the scaled copies (unit vectors)")
    ap.add_argument("--torch-threads", type=int, default=None, help="serve.torch_threads (default: torch's)")
    ap.add_argument("--probe-queries", type=int, default=50)
    ap.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder, removed)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out_path = args.out.resolve()
    work = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="afmrl-serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result: dict[str, Any] = {"listings": args.listings, "settings": {k: str(v) if isinstance(v, Path) else v
                                                                     for k, v in vars(args).items()},
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "python": platform.python_version(), "uptime_before": uptime()}}  # fmt: skip
    try:
        from importlib import metadata

        result["versions"] = {p: metadata.version(p) for p in ("pymilvus", "milvus-lite", "fastapi", "uvicorn", "torch")}
        info = build(work, args)
        result["build"] = info
        proc, port, startup = start_service(work, info["overrides"], args.torch_threads)
        result["startup_s"] = round(startup, 1)
        log(f"service up on port {port} in {startup:.1f} s")
        try:
            texts = queries(Path(info["catalog"]), args.queries + 10, args.seed)
            result["text"] = one_client(port, [text_body(t, args.k) for t in texts], warmup=10)
            log(f"text, 1 client: {result['text']}")
            result["text_8_clients"] = many_clients(port, [text_body(t, args.k) for t in texts], args.clients,
                                                    args.concurrent_seconds)  # fmt: skip
            log(f"text, {args.clients} clients: {result['text_8_clients']}")
            imgs = photos(Path(info["catalog"]), args.photo_queries + 5, args.seed)
            result["photo"] = one_client(port, [photo_body(b, args.k) for b in imgs], warmup=5)
            log(f"photo, 1 client: {result['photo']}")
        finally:
            stop_service(proc)
        result["milvus_probe"] = milvus_probe(info["overrides"], info["collection"], args.probe_queries, args.seed)
        log(f"Milvus alone: {result['milvus_probe']}")
    finally:
        result["machine"]["uptime_after"] = uptime()
        result["total_s"] = round(time.perf_counter() - start, 1)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2) + "\n")
        md = table(result)
        out_path.with_suffix(".md").write_text(md + "\n")
        print(md)
        log(f"wrote {out_path} ({result['total_s']} s)")
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
