"""Training: the one accelerate loop every stage runs through, its checkpoints, objectives and the job around it."""
