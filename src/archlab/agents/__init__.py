"""Agents that propose, implement and review candidate architectures."""
