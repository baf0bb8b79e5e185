"""Training: losses, the task (batch -> loss parts), the trainer, model health and run state."""
