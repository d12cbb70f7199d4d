"""Data layer: SAR image I/O, transforms, dataset listings and few-shot splits."""
