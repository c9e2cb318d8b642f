"""The experience memory: one DuckDB file shared by every run."""
