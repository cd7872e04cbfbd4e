"""Thin Dagster wrappers over `retriever_assets.steps`, one module per stage of the graph."""
