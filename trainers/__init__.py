"""Evaluation protocol plug-ins, one module per protocol; importing this package registers them."""
