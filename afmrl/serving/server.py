"""Run the service under uvicorn (one process: Milvus Lite allows one per ``.db``, and the encoder is
loaded once). ``serve(cfg)`` blocks until interrupted; the state is loaded before the port opens, so
the first request is answered by a warm encoder."""

from __future__ import annotations

import socket
from collections.abc import Callable

from afmrl.config import Config
from afmrl.serving.state import ServingState


def _bound_socket(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free one), so the real port can be printed before serving.

    Made with ``proto=IPPROTO_TCP``: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that
    say they are TCP, and accepted sockets inherit ``proto`` from this one. With ``proto=0`` every response
    (headers and body are two writes) waited for the client's delayed ACK: 40 ms on each keep-alive request."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def limit_threads(cfg: Config) -> None:
    """``serve.torch_threads`` for query encoding, ``serve.blas_threads`` for numpy's BLAS: Milvus Lite's scan
    is a numpy matrix-vector product, and OpenBLAS's default (one thread per core, spinning while it waits)
    turns a 3,000 x 256 product from 0.05 ms into 24 ms on two busy cores (measured here)."""
    if cfg.serve.torch_threads:
        import torch

        torch.set_num_threads(cfg.serve.torch_threads)
    if cfg.serve.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(cfg.serve.blas_threads, user_api="blas")


def serve(cfg: Config, *, on_ready: Callable[[str, ServingState], None] | None = None) -> None:
    """Load the champion, bind ``serve.host:serve.port``, serve until SIGINT/SIGTERM."""
    import uvicorn

    from afmrl.serving.app import create_app

    limit_threads(cfg)
    state = ServingState(cfg)
    try:
        state.start()
        sock = _bound_socket(cfg.serve.host, cfg.serve.port)
        host, port = sock.getsockname()[:2]
        address = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        if on_ready:
            on_ready(address, state)
        app = create_app(cfg, state)
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        state.close()
