"""Regenerate the README's pictures: what a user gets from symgrad.

    PYTHONPATH=. python docs/make_pictures.py

- docs/latex.png: ``symgrad derive --n 4 --format latex --standalone`` compiled by pdflatex, page 1
  made a PNG by ``pdftoppm`` (Debian: texlive-latex-base, poppler-utils).
- docs/terminal.png: ``symgrad derive --n 6`` as an 80-column terminal shows it (rich), drawn
  with DejaVu Sans Mono by Pillow (``pip install pillow``; Debian: fonts-dejavu-core).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
FALLBACK = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # ℯ, which the mono font lacks


def latex_picture(target: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tex = Path(scratch) / "softmax_ce.tex"
        subprocess.run([sys.executable, "-m", "symgrad", "derive", "--n", "4", "--format", "latex",
                        "--standalone", "-o", str(tex)], check=True)
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=scratch,
                       check=True, capture_output=True)
        subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile",
                        str(tex.with_suffix(".pdf")), str(target.with_suffix(""))], check=True)


def terminal_picture(target: Path, lines_shown: int = 110) -> None:
    from PIL import Image, ImageDraw, ImageFont
    from rich.console import Console

    from symgrad import derive

    console = Console(width=80, file=io.StringIO(), color_system=None, record=True)
    console.print(derive("softmax-cross-entropy", 6))
    lines = console.export_text().splitlines()
    lines = lines[:lines_shown] + (["…"] if len(lines) > lines_shown else [])
    font = ImageFont.truetype(FONT, 14)
    fallback = ImageFont.truetype(FALLBACK, 14)
    cell_w = font.getlength("M")
    cell_h = 18
    image = Image.new("RGB", (int(cell_w * 82) + 16, cell_h * len(lines) + 16), (30, 30, 30))
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        for column, char in enumerate(line):  # one cell per character, as a terminal draws
            face = fallback if char in "ℯ" else font
            draw.text((8 + column * cell_w, 8 + row * cell_h), char, font=face, fill=(230, 230, 230))
    image.save(target, optimize=True)


if __name__ == "__main__":
    for tool in ("pdflatex", "pdftoppm"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install texlive-latex-base poppler-utils")
    latex_picture(DOCS / "latex.png")
    terminal_picture(DOCS / "terminal.png")
    print("wrote", DOCS / "latex.png", "and", DOCS / "terminal.png")
