"""Compacts an hour of landing files into typed, partitioned Parquet and CSV tables."""
