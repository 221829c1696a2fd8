"""The validation gate: Great Expectations suite, image pre-checks and the quarantine."""
