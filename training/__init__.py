"""Training: data generation, model training, evaluation and export."""
