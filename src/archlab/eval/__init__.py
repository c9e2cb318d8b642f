"""Evaluation: tasks, verification and fitness; everything here runs on the trusted side."""
