"""Orchestration helpers: when to retrain (``trigger``)."""
