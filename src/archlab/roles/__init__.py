"""The roles: planner, coder, trainer, critic, the verification ladder and the human
reviewer; what each decides, whatever brain (heuristic, model, replay) answers it."""
