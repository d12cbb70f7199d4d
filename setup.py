"""Install script for sarfewshot.

The plug-in folders ``datasets/`` and ``trainers/`` (and the YAML presets in ``configs/``)
sit at the repository top level, the CoOp/Dassl layout users know, but install as
``sarfewshot.datasets``, ``sarfewshot.trainers`` and ``sarfewshot.configs``, so they never
shadow Hugging Face ``datasets`` in a user's environment.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "sarfewshot" / "__init__.py").read_text()
).group(1)

packages = [p for p in find_packages(include=["sarfewshot", "sarfewshot.*"])]
packages += ["sarfewshot.datasets", "sarfewshot.trainers", "sarfewshot.configs"]

EXTRAS = {
    "plots": ["matplotlib"],
    "tensorboard": ["tensorboard"],
    # the lora protocol (LoRA adapters injected in place with peft.inject_adapter_in_model)
    "adapters": ["peft>=0.10"],
    # --weights hf://OWNER/REPO/PATH and `sarfewshot weights fetch`
    "hub": ["huggingface_hub>=0.20"],
    # torchgeo:<weights> backbones (Sentinel-1 SSL4EO-S12 and other SAR-capable weights)
    "torchgeo": ["torchgeo>=0.6", "requests"],  # torchgeo imports requests without declaring it
    # streaming reads of the packed pretraining shards (the toolkit's own reader needs only tarfile)
    "shards": ["webdataset"],
    # --launcher slurm|local (eval job arrays, multi-node pretraining)
    "slurm": ["submitit"],
    # `sarfewshot board` (the HTML page); its tests drive a system Chromium through playwright
    "board": ["jinja2>=3.0", "playwright"],
}
# "all" installs every optional dependency; "test" adds the test runners to it, so CI
# exercises every optional path.
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})
# import-linter: `lint-imports` checks the layering contract of pyproject.toml (acyclic_siblings
# contracts need a recent release; 2.17 is the one they were written against).
EXTRAS["test"] = ["pytest", "ruff", "import-linter>=2.17", *EXTRAS["all"]]

setup(
    name="sarfewshot",
    version=VERSION,
    description="Reproducible few-shot SAR target recognition benchmarks (SAR-JEPA and baselines)",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=packages,
    package_dir={
        "sarfewshot.datasets": "datasets",
        "sarfewshot.trainers": "trainers",
        "sarfewshot.configs": "configs",
    },
    # The YAML presets ship inside the package so the CLI finds them in any install.
    package_data={
        "sarfewshot.configs": ["*.yaml", "*/*.yaml", "*/*/*.yaml"],
        # the board page's template, style sheet and script
        "sarfewshot.results": ["templates/*"],
    },
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "timm>=0.9",
        "safetensors",  # hub .safetensors weights (tensors only: nothing to unpickle)
        "yacs",
        "scikit-learn",
        "scipy>=1.11",  # stats.false_discovery_control
        "statsmodels",  # compare: MixedLM and the power of the run-unit design
        "tabulate",
        "pillow",
        "numpy",
        "tqdm",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["sarfewshot=sarfewshot.cli.main:main"]},
)
