"""Reading documents into labelled text segments, with limits that hold on hostile files.

Formats are taken from the bytes (``core.sniff``), never the extension. Libraries:

- PDF: **pypdfium2** (PDFium, the PDF engine of Chromium, fuzzed continuously by
  OSS-Fuzz; Apache-2.0/BSD wheels with the binary inside). One library gives the text
  layer and page rendering (for scanned pages and figures); PyMuPDF would too, but is
  AGPL.
- DOCX: **python-docx** (MIT, the de facto reader; its lxml parser does not resolve
  entities). Before it opens a file the ZIP directory is checked: total uncompressed
  size, compression ratio and member count are capped, so a zip bomb is refused
  without inflating anything.
- Text, Markdown, CSV, source code: the standard library (``csv``, codecs).

Every read is bounded: file size, pages, characters and a wall-clock budget checked
between pages. Past a limit the read stops and says what it skipped (a partial read),
rather than hanging or failing.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from core.sniff import sniff_file
from core.tools import ToolError

CODE_EXT = {
    ".py": "python", ".js": "javascript", ".ts": "typescript", ".tsx": "tsx", ".jsx": "jsx", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".rs": "rust", ".go": "go", ".rb": "ruby",
    ".php": "php", ".cs": "csharp", ".kt": "kotlin", ".swift": "swift", ".sh": "bash", ".sql": "sql",
    ".html": "html", ".css": "css", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
    ".xml": "xml", ".lua": "lua", ".r": "r", ".scala": "scala", ".m": "objectivec", ".pl": "perl",
}
MARKDOWN_EXT = {".md", ".markdown", ".mdx", ".rst"}


class DocumentSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.document]``."""

    max_bytes: int = 200 * 1024 * 1024  # larger files are refused before reading
    max_pages: int = 300  # PDF pages read in one go; past this the read is partial and says so
    max_chars: int = 2_000_000  # text kept from one document
    timeout: float = 30.0  # seconds one read may take; checked between pages
    docx_max_uncompressed: int = 64 * 1024 * 1024  # ZIP members inflated, all together (XML is parsed whole)
    docx_max_ratio: float = 200.0  # uncompressed / compressed, over the whole archive
    docx_max_members: int = 5000
    ocr_pages: int = 10  # scanned PDF pages OCR'd per read (slow: about a second each)
    render_dpi: int = 150  # page images for OCR and the vision model
    text_per_page: int = 16  # fewer characters per page on average: no text layer (scanned)
    chunk_chars: int = 1200  # retrieval passage size
    chunk_overlap: int = 150
    top_k: int = 8  # passages retrieved per question and document
    rerank_pool: int = 48  # passages the embedder compares with the question (the best by word overlap)


@dataclass
class Segment:
    """A labelled piece of a document: a page, a section, a range of rows."""

    label: str  # "p. 3", "section 'Results'", "rows 1-200", "lines 1-80"
    text: str
    page: int | None = None  # PDF page number (1-based)


@dataclass
class Document:
    path: str
    name: str
    kind: str  # "pdf", "docx", "markdown", "csv", "code", "text"
    segments: list[Segment] = field(default_factory=list)
    pages: int | None = None
    notes: list[str] = field(default_factory=list)  # partial reads, OCR, renamed files
    scanned_pages: list[int] = field(default_factory=list)  # PDF pages without a text layer
    language: str | None = None  # source code language

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.segments)

    @property
    def chars(self) -> int:
        return sum(len(s.text) for s in self.segments)

    def describe(self) -> str:
        """"PDF, 12 pages", "CSV, 300 rows"... for labels."""
        what = {"pdf": "PDF", "docx": "Word document", "markdown": "Markdown", "csv": "CSV", "code": "source code",
                "text": "text"}[self.kind]
        if self.kind == "code" and self.language:
            what = f"{self.language} source"
        if self.pages is not None:
            what += f", {self.pages} page{'s' if self.pages != 1 else ''}"
        return what

    def info(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "kind": self.kind, "pages": self.pages, "chars": self.chars,
                "segments": len(self.segments), "notes": self.notes, "scanned_pages": self.scanned_pages}


class _Budget:
    def __init__(self, settings: DocumentSettings, name: str) -> None:
        self.deadline = time.monotonic() + settings.timeout
        self.chars = settings.max_chars
        self.name = name

    def expired(self) -> bool:
        return time.monotonic() > self.deadline


def open_document(path: str, settings: DocumentSettings, *, pages: tuple[int, int] | None = None) -> Document:
    """Read ``path`` (already confined to the allowed roots) into labelled segments."""
    p = Path(path)
    try:
        fmt, size = sniff_file(p)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ToolError(str(exc)) from None
    if size > settings.max_bytes:
        raise ToolError(f"{p.name} is {size / 2**20:.0f} MiB; documents are read up to "
                        f"{settings.max_bytes / 2**20:.0f} MiB ([plugin.document] max_bytes)")
    doc_kind = {"pdf": "pdf", "docx": "docx", "text": "text"}.get(fmt)
    if doc_kind is None:
        raise ToolError(_not_a_document(p, fmt))
    budget = _Budget(settings, p.name)
    ext = p.suffix.lower()
    if doc_kind == "pdf":
        doc = _read_pdf(p, settings, budget, pages)
    elif doc_kind == "docx":
        doc = _read_docx(p, settings, budget)
    else:
        doc = _read_text(p, ext, settings, budget, size)
    expected = {".pdf": "pdf", ".docx": "docx"}.get(ext)
    if expected and expected != doc.kind and not (expected == "docx" and doc.kind == "docx"):
        doc.notes.append(f"named {ext} but its content is {doc.describe().split(',')[0]}: read as that")
    return doc


def _not_a_document(p: Path, fmt: str) -> str:
    kinds = {"png": "an image", "jpeg": "an image", "gif": "an image", "webp": "an image", "bmp": "an image",
             "tiff": "an image", "wav": "audio", "mp3": "audio", "flac": "audio", "ogg": "audio", "mp4": "a video",
             "webm": "a video", "mov": "a video", "xlsx": "an Excel workbook", "pptx": "a PowerPoint deck",
             "ole": "a legacy Office file (.doc/.xls/.ppt) or a password-protected Office document",
             "zip": "a ZIP archive", "epub": "an EPUB book",
             "odf": "an OpenDocument file", "rtf": "an RTF file"}
    what = kinds.get(fmt, "a binary file of no document format Loom reads")
    hint = {"an image": "ask about it as an image (vision.*)", "audio": "transcribe it (voice.transcribe)",
            "a video": "ask about it as a video (vision.video)"}.get(what, "convert it to PDF, DOCX or text first")
    return (f"{p.name} is {what}, not a document (its content, not its name, decides): {hint}. "
            "Documents Loom reads: PDF, DOCX, Markdown, plain text, CSV and source code")


# --- PDF -----------------------------------------------------------------------------------


def _pdfium() -> Any:
    try:
        import pypdfium2
    except ImportError:
        raise ToolError("reading PDFs needs pypdfium2: pip install 'loomd[document]'") from None
    return pypdfium2


def open_pdf(p: Path) -> Any:
    pdfium = _pdfium()
    try:
        return pdfium.PdfDocument(str(p))
    except pdfium.PdfiumError as exc:
        msg = str(exc)
        if "password" in msg.lower():
            raise ToolError(f"{p.name} is encrypted with a password, so its text cannot be read. Decrypt it "
                            "first (e.g. `qpdf --decrypt --password=... in.pdf out.pdf`) and attach that") from None
        raise ToolError(f"{p.name} is not a readable PDF ({msg}); it may be damaged or truncated") from None


def parse_pages(spec: str | None, total: int) -> tuple[int, int] | None:
    """"3", "2-10" or "5-" (1-based, inclusive) to a range; None: all."""
    if not spec:
        return None
    spec = spec.strip()
    try:
        a, _, b = spec.partition("-")
        first = int(a)
        last = int(b) if b.strip() else (total if "-" in spec else first)
    except ValueError:
        raise ToolError(f"pages must look like '3', '2-10' or '5-', got {spec!r}") from None
    if first < 1 or last < first:
        raise ToolError(f"pages {spec!r}: the first page is 1 and the range must not be reversed")
    if first > total:
        raise ToolError(f"pages {spec!r}: the document has {total} page{'s' if total != 1 else ''}")
    return first, min(last, total)


def _read_pdf(p: Path, s: DocumentSettings, budget: _Budget, pages: tuple[int, int] | None) -> Document:
    pdf = open_pdf(p)
    try:
        total = len(pdf)
        doc = Document(str(p), p.name, "pdf", pages=total)
        first, last = pages or (1, total)
        stop = min(last, first + s.max_pages - 1)
        used = 0
        for number in range(first, stop + 1):
            if budget.expired():
                doc.notes.append(f"stopped after {s.timeout:g} s at page {number - 1}: read pages {first}-"
                                 f"{number - 1} of {total}; ask for pages={number}-{last} to read on")
                break
            page = pdf[number - 1]
            try:
                textpage = page.get_textpage()
                text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n").strip()
                textpage.close()
            finally:
                page.close()
            if len(text) < s.text_per_page:
                doc.scanned_pages.append(number)
            if used + len(text) > budget.chars:
                text = text[: max(0, budget.chars - used)]
                doc.segments.append(Segment(f"p. {number}", text, number))
                doc.notes.append(f"stopped at {budget.chars} characters on page {number} of {total}")
                break
            used += len(text)
            doc.segments.append(Segment(f"p. {number}", text, number))
        else:
            if stop < last:
                doc.notes.append(f"read pages {first}-{stop} of {total} (at most {s.max_pages} at once); "
                                 f"ask for pages={stop + 1}-{last} to read on")
        return doc
    finally:
        pdf.close()


def render_pages(path: str, numbers: list[int], dpi: int) -> list[Any]:
    """PIL images of the given 1-based pages."""
    pdf = open_pdf(Path(path))
    try:
        out = []
        for n in numbers:
            if not 1 <= n <= len(pdf):
                raise ToolError(f"page {n} does not exist: the document has {len(pdf)} pages")
            page = pdf[n - 1]
            try:
                w, h = page.get_size()
                scale = min(dpi / 72, 4000 / max(w, h, 1))  # cap a giant page at 4000 px
                out.append(page.render(scale=scale).to_pil())
            finally:
                page.close()
        return out
    finally:
        pdf.close()


# --- DOCX ----------------------------------------------------------------------------------


def check_zip(p: Path, s: DocumentSettings) -> None:
    """Refuse zip bombs from the central directory, before inflating anything."""
    try:
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
    except zipfile.BadZipFile as exc:
        raise ToolError(f"{p.name} is not a readable DOCX: its ZIP container is damaged ({exc})") from None
    if len(infos) > s.docx_max_members:
        raise ToolError(f"{p.name} has {len(infos)} parts inside; a DOCX is read up to {s.docx_max_members}")
    inflated = sum(i.file_size for i in infos)
    packed = max(1, sum(i.compress_size for i in infos))
    if inflated > s.docx_max_uncompressed or inflated / packed > s.docx_max_ratio:
        raise ToolError(f"{p.name} would inflate to {inflated / 2**20:.0f} MiB from {packed / 2**20:.1f} MiB "
                        f"(ratio {inflated / packed:.0f}): refused as a likely zip bomb. Limits: "
                        f"[plugin.document] docx_max_uncompressed, docx_max_ratio")
    if not any(i.filename == "word/document.xml" for i in infos):
        raise ToolError(f"{p.name} is a ZIP archive without word/document.xml: not a Word document")


def _read_docx(p: Path, s: DocumentSettings, budget: _Budget) -> Document:
    check_zip(p, s)
    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph
    except ImportError:
        raise ToolError("reading DOCX needs python-docx: pip install 'loomd[document]'") from None
    try:
        d = docx.Document(str(p))
    except Exception as exc:  # python-docx raises many kinds on a broken package
        raise ToolError(f"{p.name} is not a readable Word document ({type(exc).__name__}: {exc})") from None
    doc = Document(str(p), p.name, "docx")
    section, lines, used = "start", [], 0

    def close() -> None:
        if any(line.strip() for line in lines):
            doc.segments.append(Segment(f"section '{section}'" if section != "start" else "opening",
                                        "\n".join(lines).strip()))

    for child in d.element.body.iterchildren():
        if budget.expired() or used > budget.chars:
            doc.notes.append(f"stopped reading after {used} characters (limits: timeout {s.timeout:g} s, "
                             f"max_chars {s.max_chars})")
            break
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, d)
            text = para.text.strip()
            style = (para.style.name if para.style is not None else "") or ""
            if style.startswith("Heading") or style == "Title":
                close()
                level = int(style[-1]) if style[-1:].isdigit() else 1
                section, lines = text or section, [f"{'#' * level} {text}"]
            elif text:
                lines.append(("- " if "List" in style else "") + text)
            used += len(text)
        elif tag == "tbl":
            rows = []
            for row in Table(child, d).rows:
                cells = [c.text.strip().replace("\n", " ") for c in row.cells]
                rows.append("| " + " | ".join(cells) + " |")
            lines.append("\n".join(rows))
            used += sum(len(r) for r in rows)
    close()
    return doc


# --- text, Markdown, CSV, code -------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _read_text(p: Path, ext: str, s: DocumentSettings, budget: _Budget, size: int) -> Document:
    with p.open("rb") as f:
        data = f.read(min(size, budget.chars * 4))
    text = _decode(data)
    notes = []
    if len(text) > budget.chars or size > len(data):
        text = text[: budget.chars]
        notes.append(f"read the first {len(text)} characters of {size} bytes ([plugin.document] max_chars)")
    if ext == ".csv" or ext == ".tsv" or (ext in ("", ".txt") and _looks_csv(text)):
        doc = _csv(p, text)
    elif ext in MARKDOWN_EXT:
        doc = Document(str(p), p.name, "markdown", _sections(text))
    elif ext in CODE_EXT:
        doc = Document(str(p), p.name, "code", _lines(text, 80), language=CODE_EXT[ext])
    else:
        doc = Document(str(p), p.name, "text", _lines(text, 60))
    doc.notes += notes
    return doc


def _looks_csv(text: str) -> bool:
    head = text[:4000].splitlines()[:6]
    if len(head) < 2:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(head), delimiters=",;\t")
    except csv.Error:
        return False
    counts = {len(row) for row in csv.reader(head, dialect)}
    return len(counts) == 1 and counts.pop() > 1


def _csv(p: Path, text: str) -> Document:
    try:
        dialect = csv.Sniffer().sniff(text[:4000], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return Document(str(p), p.name, "csv", [])
    header, body = rows[0], rows[1:]
    segments = []
    per = 40  # rows per segment, each with the header so a retrieved passage is self-explaining
    for i in range(0, max(len(body), 1), per):
        chunk = body[i:i + per]
        lines = [" | ".join(header)] + [" | ".join(r) for r in chunk]
        segments.append(Segment(f"rows {i + 1}-{i + len(chunk)}", "\n".join(lines)))
    doc = Document(str(p), p.name, "csv", segments)
    doc.notes.append(f"{len(body)} rows x {len(header)} columns: {', '.join(header[:20])}")
    return doc


def _sections(text: str) -> list[Segment]:
    out: list[Segment] = []
    title, lines = "opening", []
    for line in text.splitlines():
        if line.startswith("#") and line.lstrip("#").startswith(" "):
            if "".join(lines).strip():
                out.append(Segment(f"section '{title}'" if title != "opening" else "opening", "\n".join(lines)))
            title, lines = line.lstrip("#").strip(), [line]
        else:
            lines.append(line)
    if "".join(lines).strip():
        out.append(Segment(f"section '{title}'" if title != "opening" else "opening", "\n".join(lines)))
    return out


def _lines(text: str, per: int) -> list[Segment]:
    lines = text.splitlines()
    return [Segment(f"lines {i + 1}-{min(i + per, len(lines))}", "\n".join(lines[i:i + per]))
            for i in range(0, len(lines), per)] or [Segment("lines 1-1", text)]
