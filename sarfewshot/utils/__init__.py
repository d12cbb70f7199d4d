"""Small helpers shared by every layer (registries, seeding, hashing, atomic files)."""
