"""The HTML of a report: light, offline, made for reading.

:func:`export_html` runs nbconvert with facekit's template (``templates/facekit_report``: a small stylesheet
instead of JupyterLab's ~5,000 lines, code cells folded in ``<details>`` with their outputs shown, no scripts),
then finishes the page:

- **math without a network**: the LaTeX of Markdown cells and Markdown outputs (``$...$``, ``$$...$$``,
  ``\\begin{align}...``) is turned into MathML with ``latex2mathml``, which browsers render natively; a formula
  it cannot convert stays as its TeX source in ``<code class="tex-unconverted">`` and is named in a warning;
- **a table of contents** of the Markdown headings (levels 1-3), in a sidebar;
- **figures at a readable size**: the course draws figures at 72 dpi to keep notebooks small; they are shown
  at 96/72 of their pixel size (their intended physical size), at most the width of the text.

>>> page, warnings = export_html(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T\\n$x^2$")]))
>>> "<math" in page and "$" not in page, warnings
(True, [])
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nbformat  # noqa: F401  (used by the doctest)

from facekit.io import write_text

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "facekit_report"
FIGURE_SCALE = 96 / 72  # CSS px per image pixel: the course's 72-dpi figures at their physical size
MAX_FIGURE_WIDTH_PX = 940  # the text column
TOC_LEVELS = ("h1", "h2", "h3")
SKIP_MATH_IN = {"code", "pre", "script", "style", "math", "kbd", "samp", "textarea"}

_DISPLAY = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|(\\begin\{(\w+\*?)\}.+?\\end\{\4\})", re.S)
# inline $...$: no space just inside the dollars, no digit right after the closing one (so "$5 and $6" is text)
_INLINE = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]*?[^\s\\$])\$(?![\d$])|\\\((.+?)\\\)")
_ENVS_AS_ALIGNED = {"align": "aligned", "align*": "aligned", "equation": None, "equation*": None,
                    "gather": "gathered", "gather*": "gathered"}

__all__ = ["export_html", "write_html", "latex_to_mathml", "TEMPLATE_DIR", "TEMPLATE_NAME"]


def latex_to_mathml(tex: str, *, display: bool = False) -> str:
    """One formula as MathML (``latex2mathml``); raises ValueError when it cannot be converted.

    >>> latex_to_mathml(r"\\frac{a}{b}").startswith('<math xmlns="http://www.w3.org/1998/Math/MathML"')
    True
    """
    from latex2mathml.converter import convert

    tex = tex.strip()
    env = re.fullmatch(r"\\begin\{(\w+\*?)\}(.+)\\end\{\1\}", tex, re.S)
    if env and env.group(1) in _ENVS_AS_ALIGNED:  # latex2mathml knows aligned/gathered, not align/gather
        inner = _ENVS_AS_ALIGNED[env.group(1)]
        tex = env.group(2) if inner is None else rf"\begin{{{inner}}}{env.group(2)}\end{{{inner}}}"
    try:
        return convert(tex, display="block" if display else "inline")
    except Exception as exc:  # latex2mathml raises its own errors, and IndexError/KeyError on odd input
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc


def _convert_text(text: str, failures: list) -> str | None:
    """`text` (a text node, unescaped) with its math as MathML, as HTML; None when it holds no math."""
    from html import escape

    pieces, found = [], False

    def math(tex: str, display: bool) -> str:
        try:
            return latex_to_mathml(tex, display=display)
        except ValueError as exc:
            failures.append(f"{tex.strip()[:80]!r} ({exc})")
            delim = "$$" if display else "$"
            return f'<code class="tex-unconverted">{escape(delim + tex + delim)}</code>'

    def inline(segment: str) -> str:
        nonlocal found
        out, last = [], 0
        for m in _INLINE.finditer(segment):
            found = True
            out += [escape(segment[last:m.start()]), math(m.group(1) or m.group(2), False)]
            last = m.end()
        return "".join(out) + escape(segment[last:])

    last = 0
    for m in _DISPLAY.finditer(text):
        found = True
        pieces += [inline(text[last:m.start()]), math(m.group(1) or m.group(2) or m.group(3), True)]
        last = m.end()
    pieces.append(inline(text[last:]))
    return "".join(pieces) if found else None


def _render_math(soup, failures: list) -> int:
    """Replace the math in every text node (outside code, pre, scripts) with MathML; return how many nodes."""
    from bs4 import BeautifulSoup, NavigableString

    changed = 0
    for node in list(soup.find_all(string=True)):
        if type(node) is not NavigableString or "$" not in node and "\\" not in node:
            continue
        if any(p.name in SKIP_MATH_IN for p in node.parents):
            continue
        html = _convert_text(str(node), failures)
        if html is not None:
            node.replace_with(BeautifulSoup(html, "html.parser"))
            changed += 1
    return changed


def _table_of_contents(soup) -> None:
    """Fill ``<nav id="toc">`` with the Markdown headings (h1-h3) that have an id, nested by level."""
    nav = soup.find("nav", id="toc")
    if nav is None:
        return
    headings = [h for h in soup.select(".text_cell_render h1, .text_cell_render h2, .text_cell_render h3")
                if h.get("id")]
    if len(headings) < 2:
        return
    title = soup.new_tag("p", attrs={"class": "toc-title"})
    title.string = "Contents"
    nav.append(title)
    root = soup.new_tag("ul")
    nav.append(root)
    stack = [(min(TOC_LEVELS.index(h.name) for h in headings), root)]  # (level of its items, <ul>)
    last = None
    for h in headings:
        level = TOC_LEVELS.index(h.name)
        while level < stack[-1][0] and len(stack) > 1:
            stack.pop()
        if level > stack[-1][0] and last is not None:  # deeper: a list inside the previous entry
            ul = soup.new_tag("ul")
            last.append(ul)
            stack.append((level, ul))
        last = soup.new_tag("li")
        a = soup.new_tag("a", href=f"#{h['id']}")
        a.string = "".join(t if isinstance(t, str) else t.get_text() for t in h.contents
                           if not (getattr(t, "name", None) == "a" and "anchor-link" in t.get("class", []))).strip()
        last.append(a)
        stack[-1][1].append(last)


def _image_width(img) -> int | None:
    src = img.get("src", "")
    if not src.startswith("data:image/") or ";base64," not in src:
        return None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            return im.width
    except Exception:  # an odd image keeps its own size
        return None


def _size_figures(soup) -> None:
    for img in soup.select(".output_area img"):
        if img.get("width") or img.get("style"):
            continue
        width = _image_width(img)
        if width:
            img["style"] = f"width: {min(round(width * FIGURE_SCALE), MAX_FIGURE_WIDTH_PX)}px"


def export_html(nb) -> tuple[str, list[str]]:
    """The report page of an executed notebook node, and warnings (formulas left as TeX).

    Raises whatever nbconvert raises on a broken notebook; the runner records it as a warning.
    """
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter

    if not (TEMPLATE_DIR / TEMPLATE_NAME / "index.html.j2").is_file():
        raise FileNotFoundError(f"facekit's HTML template is missing from this installation "
                                f"({TEMPLATE_DIR / TEMPLATE_NAME}): install facekit from a checkout (pip install -e .) "
                                "or from a wheel built with its package data (facekit.reports: templates/*/*)")
    exporter = HTMLExporter(extra_template_basedirs=[str(TEMPLATE_DIR)], template_name=TEMPLATE_NAME,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    soup = BeautifulSoup(body, "html.parser")
    failures: list = []
    _render_math(soup, failures)
    _table_of_contents(soup)
    _size_figures(soup)
    warnings = []
    if failures:
        shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5 else "")
        warnings.append(f"HTML: {len(failures)} formula(s) left as TeX (latex2mathml could not convert): {shown}")
    return str(soup), warnings


def write_html(nb, out: str | Path) -> list[str]:
    """Write the report page of `nb` to `out` atomically; return the warnings of :func:`export_html`."""
    page, warnings = export_html(nb)
    write_text(out, page)
    return warnings
