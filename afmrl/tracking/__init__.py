"""MLflow tracking helpers shared by every stage."""
