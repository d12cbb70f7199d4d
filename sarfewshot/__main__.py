"""Allow ``python -m sarfewshot``."""

from sarfewshot.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
