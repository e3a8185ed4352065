"""A generated block of a Markdown file: a marker line, what a command writes there, a closing
marker line, so the command can rewrite it in place and a test can tell when it is out of date (the
README's gpu reference table, its table of run fields)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text


@dataclass(frozen=True)
class Block:
    name: str
    note: str  # what writes it, shown in the opening marker

    @property
    def begin(self) -> str:
        return f"<!-- {self.name}: {self.note} -->"

    @property
    def end(self) -> str:
        return f"<!-- /{self.name} -->"

    def wrap(self, lines: list[str]) -> str:
        """The block, markers included, around these lines."""
        return "\n".join([self.begin, *lines, self.end])

    def split(self, text: str, where) -> tuple[str, str, str]:
        """(before, the block with its markers, after); ValueError unless ``text`` has it once."""
        b, e = self.begin, self.end
        if text.count(b) != 1 or text.count(e) != 1 or text.index(b) > text.index(e):
            raise ValueError(f"{where}: needs exactly one {self.name} block (a line {b!r}, then a line {e!r})")
        head, rest = text.split(b)
        body, tail = rest.split(e)
        return head, b + body + e, tail

    def current(self, path: Path) -> str:
        return self.split(Path(path).read_text(encoding="utf-8"), path)[1]

    def write(self, path: Path, block: str) -> bool:
        """Replace the block in the file at ``path`` by ``block``; True if it changed."""
        path = Path(path)
        head, old, tail = self.split(path.read_text(encoding="utf-8"), path)
        if block != old:
            write_text(path, head + block + tail)
        return block != old
