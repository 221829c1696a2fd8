"""CLI command modules: each defines a typer sub-app registered in afmrl/cli.py."""
