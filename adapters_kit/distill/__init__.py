"""Knowledge distillation: a student run trained on a teacher run's outputs (a smaller, faster model)."""
