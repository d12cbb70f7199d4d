"""The help formatter of every ``sarfewshot`` parser."""

from __future__ import annotations

import argparse
import textwrap


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps prose paragraphs of descriptions and epilogs to the terminal width, but keeps
    paragraphs with indented lines (command examples) exactly as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.strip("\n").split("\n\n")
        return "\n\n".join(_fill_paragraph(p, width, indent) for p in paragraphs)


def _fill_paragraph(paragraph: str, width: int, indent: str) -> str:
    lines = paragraph.splitlines()
    if any(line[:1].isspace() for line in lines[1:]):
        return "\n".join(indent + line for line in lines)
    return textwrap.fill(
        " ".join(line.strip() for line in lines),
        width,
        initial_indent=indent,
        subsequent_indent=indent,
    )
