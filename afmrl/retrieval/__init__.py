"""Retrieval: metrics, exact search, evaluation tasks and reports (Milvus search lives beside them)."""
