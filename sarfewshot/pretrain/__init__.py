"""Self-supervised pretraining: SAR-JEPA and its baselines."""
