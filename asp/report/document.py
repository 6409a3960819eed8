"""Table data built once, rendered to markdown (summary.md, table.md) and shown in HTML pages.

A ``Document`` is a title, intro blocks and sections with headings; a block is a ``Text``
paragraph or a ``Table`` (a head and rows of cells, all text). ``markdown()`` writes it; the page
templates read its blocks directly (``kind``, ``text``, ``head``, ``rows``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Text:
    """A paragraph."""

    text: str
    kind: str = "text"

    def markdown(self) -> str:
        return self.text


@dataclass
class Table:
    """A table: ``head`` (cells) and ``rows`` (lists of cells as wide as the head)."""

    head: list[str]
    rows: list[list[str]] = field(default_factory=list)
    kind: str = "table"

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.head) + " |", "|---" * len(self.head) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Section:
    heading: str
    blocks: list[Text | Table] = field(default_factory=list)


@dataclass
class Document:
    """A summary: its ``title``, ``intro`` blocks and ``sections``."""

    title: str
    intro: list[Text | Table] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def markdown(self) -> str:
        """``# title``, the intro blocks, then each section as ``## heading`` and its blocks, one
        blank line between any two, one newline at the end."""
        chunks = [f"# {self.title}", *(b.markdown() for b in self.intro)]
        for section in self.sections:
            chunks += [f"## {section.heading}", *(b.markdown() for b in section.blocks)]
        return "\n\n".join(chunks) + "\n"
