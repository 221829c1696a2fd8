"""Stages: one function each, called by the CLI, the DVC stages and the KFP components."""
