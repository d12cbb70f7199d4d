"""sarfewshot: reproducible few-shot SAR target recognition benchmarks."""

__version__ = "0.1.0"
