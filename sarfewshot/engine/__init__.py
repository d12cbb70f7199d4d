"""Dassl-compatible engine: config, registries, trainer loop, optimisers, evaluator."""
