"""YAML presets (datasets, trainers, pretraining), installed as ``sarfewshot.configs``."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent


def config_path(*parts: str) -> Path:
    """Return the path of a bundled preset.

    Example: ``config_path("trainers", "linear", "vit_b16.yaml")``.

    Raises:
        FileNotFoundError: naming the preset and listing the folder's files.
    """
    path = CONFIG_DIR.joinpath(*parts)
    if not path.is_file():
        folder = path.parent
        known = sorted(p.name for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise FileNotFoundError(f"no bundled config {'/'.join(parts)}; available here: {known}")
    return path
