"""Baseline seed candidates, shipped as source text (read, never imported, by the orchestrator)."""
