"""nextpick retraining: the next-item model, its TFLite export, evaluation and baselines."""
