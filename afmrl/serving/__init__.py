"""The search service (``afmrl serve``): FastAPI on uvicorn over the Milvus index and the champion encoder.

- :mod:`afmrl.serving.state`: the served (encoder, collection) pair, loaded once and swapped atomically
  when the registry's champion or the serving alias moves (:class:`~afmrl.serving.state.ServingState`).
- :mod:`afmrl.serving.searcher`: one query -> candidates (one Milvus client, only the needed fields),
  with a timing breakdown.
- :mod:`afmrl.serving.compare`: which key attributes of a candidate agree with the query, which differ.
- :mod:`afmrl.serving.app`: the HTTP API (``/search``, ``/listings/{id}/similar``, ``/health``,
  ``/metrics``, ``/images/{id}``) and the web pages in ``static/``.
- :mod:`afmrl.serving.dedup`: the duplicate review page's data (the dedup stage's groups Parquet).
- :mod:`afmrl.serving.server`: runs it all under uvicorn.
"""
