"""Orchestration: the LangGraph loop of one lane (graph, nodes, state), the run's lanes,
budgets and console output, and starting, resuming and concluding runs."""
