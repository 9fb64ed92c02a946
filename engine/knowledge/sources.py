"""Reading what an operator ingests: .txt, .md and .pdf files, and http(s) URLs (HTML, text, Markdown, PDF)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx

SUFFIXES = {".txt": "text", ".md": "markdown", ".markdown": "markdown", ".pdf": "pdf"}
URL_TIMEOUT_SECONDS = 20.0
MAX_URL_BYTES = 20 * 1024 * 1024


class SourceError(Exception):
    """A source that cannot be read; the message says why in one line."""


@dataclass(frozen=True)
class Source:
    key: str  # the document's identity in its knowledge base: the absolute path or the URL
    title: str
    text: str
    markdown: bool


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise SourceError(f"not a readable PDF: {exc}") from exc


def read_file(path: Path) -> Source:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SourceError(f"{path}: unsupported file type (use {', '.join(sorted(SUFFIXES))})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
    text = pdf_text(data) if kind == "pdf" else data.decode("utf-8", errors="replace")
    return Source(str(path.resolve()), path.name, text, markdown=kind == "markdown")


class _HTMLText(HTMLParser):
    """The readable text of a page, headings as Markdown headings, scripts and styles left out."""

    SKIP = {"script", "style", "noscript", "svg", "nav", "footer", "head"}
    BLOCK = {"p", "div", "li", "br", "tr", "section", "article", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        self._in_title = tag == "title"
        if tag in self.BLOCK:
            self.parts.append("\n\n")
        if re.fullmatch(r"h[1-6]", tag):
            self.parts.append("#" * int(tag[1]) + " ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1
        self._in_title = False
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()
        elif not self._skipping:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        joined = "".join(self.parts)
        return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", re.sub(r"[ \t]+\n", "\n", joined)).strip()


async def read_url(url: str, http: httpx.AsyncClient | None = None) -> Source:
    client = http or httpx.AsyncClient(timeout=URL_TIMEOUT_SECONDS, follow_redirects=True)
    try:
        response = await client.get(url)
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        raise SourceError(f"{url}: HTTP {exc.response.status_code}") from exc
    except httpx.HTTPError as exc:
        raise SourceError(f"{url}: cannot fetch ({type(exc).__name__}: {exc or 'no network?'})") from exc
    finally:
        if http is None:
            await client.aclose()
    if len(response.content) > MAX_URL_BYTES:
        raise SourceError(f"{url}: larger than {MAX_URL_BYTES // 1024 // 1024} MB")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/pdf" or url.lower().endswith(".pdf"):
        return Source(url, url, pdf_text(response.content), markdown=False)
    if kind in ("text/html", "application/xhtml+xml"):
        page = _HTMLText()
        page.feed(response.text)
        return Source(url, page.title or url, page.text(), markdown=True)
    if kind.startswith("text/"):
        return Source(url, url, response.text, markdown=kind == "text/markdown" or url.endswith(".md"))
    raise SourceError(f"{url}: unsupported content type {kind or '(none)'}")


async def read_source(ref: str, http: httpx.AsyncClient | None = None) -> Source:
    source = await read_url(ref, http) if is_url(ref) else read_file(Path(ref))
    if not source.text.strip():
        raise SourceError(f"{ref}: no text found")
    return source
