"""The search space (a typed genome of primitives rendered to PyTorch by templates) and
the offline heuristic brain that searches it; nothing here knows about runs."""
