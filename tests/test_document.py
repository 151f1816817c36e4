"""document.*: PDF (text layer, scanned pages by OCR, figures to the vision model), DOCX,
Markdown, text, CSV and code read into labelled text; long documents searched with the
MiniLM embedder; hostile files (encrypted, zip bomb, 2,000 pages, wrong extension) get a
clear error or a bounded partial read, within seconds."""

from __future__ import annotations

import random
import zipfile
from types import SimpleNamespace

import anyio
import msgspec
import pytest

from core.hookspecs import hookimpl
from core.tools import ToolError
from tests import fake_coordinator as fake

pytestmark = pytest.mark.anyio

TOPICS = ["gardening", "rail timetables", "bread baking", "tax forms", "bird migration", "chess openings",
          "roof repairs", "cheese making", "tide tables", "violin strings"]


def _pdf(path, pages: list[str], *, password: str | None = None, image=None):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    if image is not None:
        pdf.add_page()
        pdf.image(image, x=10, y=10, w=180)
    if password:
        pdf.set_encryption(owner_password="owner", user_password=password)
    pdf.output(str(path))
    return path


def _filler(rng: random.Random, topic: str) -> str:
    words = f"{topic} season notes plan record list detail routine method care tools weather cost time".split()
    return " ".join(" ".join(rng.choice(words) for _ in range(10)).capitalize() + "." for _ in range(6))


def _big_pdf(path, pages: int) -> None:
    """A PDF of ``pages`` pages sharing one content stream, written directly (fast at any size)."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", None,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    content = b"BT /F1 12 Tf 72 720 Td (A page of a very long report.) Tj ET"
    objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    kids = []
    for _ in range(pages):
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                    b"/Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(b"%d 0 R" % len(objs))
    objs[1] = b"<< /Type /Pages /Kids [" + b" ".join(kids) + b"] /Count %d >>" % pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    path.write_bytes(bytes(out))


def _text_image(text: str):
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (1400, 300), "white")
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 64) \
        if __import__("os").path.exists("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf") \
        else ImageFont.load_default(size=64)
    ImageDraw.Draw(im).text((40, 100), text, fill="black", font=font)
    return im


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import docx

    d = tmp_path_factory.mktemp("docs")
    rng = random.Random(7)
    f = SimpleNamespace(dir=d)
    f.report = _pdf(d / "report.pdf", ["Quarterly report. Revenue grew 12 percent to 4.2 million euros.",
                                       "Figure 1: revenue by region. Outlook: stable."])
    pages = [_filler(rng, TOPICS[i % len(TOPICS)]) for i in range(30)]
    pages[26] = ("Security appendix. The launch code for the demo rocket is PURPLE-FALCON-42; keep it secret. "
                 + _filler(rng, "security"))
    f.long = _pdf(d / "long.pdf", pages)
    f.secret = _pdf(d / "secret.pdf", ["classified"], password="hunter2")
    f.scanned = _pdf(d / "scan.pdf", [], image=_text_image("INVOICE TOTAL 1234"))
    f.huge = d / "huge.pdf"
    _big_pdf(f.huge, 2000)
    doc = docx.Document()
    doc.add_heading("Onboarding guide", 1)
    doc.add_paragraph("Welcome to the team. Badges are collected at reception.")
    doc.add_heading("Equipment", 2)
    table = doc.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Item", "Owner"
    table.cell(1, 0).text, table.cell(1, 1).text = "Laptop", "IT desk"
    f.docx = d / "guide.docx"
    doc.save(f.docx)
    f.bomb = d / "bomb.docx"
    with zipfile.ZipFile(f.bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"<w:document/>" + b" " * 60_000_000)
    f.csv = d / "sales.csv"
    f.csv.write_text("region,month,units\nnorth,jan,120\nsouth,jan,95\nnorth,feb,130\n")
    f.md = d / "notes.md"
    f.md.write_text("# Plan\nShip on Friday.\n\n## Risks\nThe printer is slow.\n")
    f.code = d / "util.py"
    f.code.write_text("def add(a, b):\n    return a + b\n")
    f.disguised = d / "actually_pdf.docx"
    f.disguised.write_bytes(f.report.read_bytes())
    f.png = d / "photo.pdf"
    _text_image("hello").save(f.png, "PNG")
    f.blob = d / "data.txt"
    f.blob.write_bytes(bytes(range(256)) * 8)
    return f


@pytest.fixture
def app_for(make_app, files):
    from core.config import LoomConfig, PathsConfig

    def build(*plugins, extra=None, config=None):
        cfg = config or LoomConfig()
        cfg.paths = PathsConfig(allowed_roots=[str(files.dir)])
        return make_app("document", *plugins, extra=extra, config=cfg)

    return build


async def _read(app, path, **kw):
    with anyio.fail_after(30):
        return await app.call("document.read", {"path": str(path), **kw})


async def test_each_document_type_reads_as_labelled_text(app_for, files):
    app = app_for()
    async with app:
        pdf = await _read(app, files.report)
        word = await _read(app, files.docx)
        csv = await _read(app, files.csv)
        md = await _read(app, files.md)
        code = await _read(app, files.code)
    assert "[p. 1]" in pdf.text() and "Revenue grew 12 percent" in pdf.text() and pdf.structured["pages"] == 2
    assert "# Onboarding guide" in word.text() and "| Laptop | IT desk |" in word.text()
    assert word.structured["kind"] == "docx"
    assert csv.structured["kind"] == "csv" and "3 rows x 3 columns" in csv.text() and "north | feb | 130" in csv.text()
    assert md.structured["kind"] == "markdown" and md.structured["segments"] == 2
    assert code.structured["kind"] == "code" and "python source" in code.text() and "```python" in code.text()


async def test_pages_range_and_page_images(app_for, files):
    app = app_for()
    async with app:
        second = await _read(app, files.report, pages="2")
        images = await app.call("document.pages", {"path": str(files.report), "pages": "1-2", "dpi": 50})
        with pytest.raises(ToolError, match="the document has 2 pages"):
            await _read(app, files.report, pages="5")
    assert "Figure 1" in second.text() and "Revenue" not in second.text()
    assert [type(c).__name__ for c in images.content] == ["Text", "Image", "Image"]


async def test_scanned_page_is_read_by_ocr(app_for, files):
    app = app_for()
    async with app:
        out = await _read(app, files.scanned)
    assert "INVOICE" in out.text().upper() and "1234" in out.text()
    assert any("no text layer: read by OCR (tesseract)" in n for n in out.structured["notes"])


async def test_long_document_is_searched_with_the_embedder(app_for, files):
    app = app_for("embed")
    async with app:
        hits = await app.call("document.search", {"path": str(files.long), "query": "what is the rocket's code?",
                                                  "top_k": 3})
        ctx = await app.call("document.context", {"paths": [str(files.long)], "question": "What is the launch code?",
                                                  "max_chars": 3000})
    assert hits.structured["ranked_by"] == "embeddings (minilm)"  # 30 short pages: every passage compared
    assert hits.structured["hits"][0]["where"] == "p. 27" and "PURPLE-FALCON-42" in hits.structured["hits"][0]["text"]
    text = ctx.structured["text"]
    assert "PURPLE-FALCON-42" in text and "[p. 27]" in text and len(text) < 3600
    assert "only the" in text and "passages most relevant" in text


@pytest.mark.parametrize(("name", "error"), [
    ("secret", "encrypted with a password"),
    ("bomb", "likely zip bomb"),
    ("png", "is an image, not a document"),
    ("blob", "not a document"),
])
async def test_hostile_files_get_a_clear_error_quickly(app_for, files, name, error):
    app = app_for()
    async with app:
        with pytest.raises(ToolError, match=error):
            await _read(app, getattr(files, name))
        assert (await _read(app, files.csv)).structured["kind"] == "csv"  # still serving


async def test_two_thousand_pages_are_a_bounded_partial_read(app_for, files):
    app = app_for()
    async with app:
        out = await _read(app, files.huge, max_chars=2000)
        tail = await _read(app, files.huge, pages="1990-")
    assert out.structured["pages"] == 2000 and out.structured["segments"] == 300
    assert any("read pages 1-300 of 2000" in n and "pages=301-2000" in n for n in out.structured["notes"])
    assert out.structured["truncated"] and tail.structured["segments"] == 11


async def test_wrong_extension_is_read_by_content(app_for, files):
    app = app_for()
    async with app:
        out = await _read(app, files.disguised)
    assert out.structured["kind"] == "pdf" and "Revenue grew" in out.text()
    assert any("named .docx but its content is PDF" in n for n in out.structured["notes"])


async def test_assistant_uses_every_attachment_labelled(app_for, files):
    coordinator = fake.FakeCoordinator()
    cfg = fake.config()
    app = app_for("assistant", "embed", extra={"fake": fake.plugin(coordinator)}, config=cfg)
    async with app:
        out = (await app.call("assistant.ask", {
            "text": "Compare these files.", "attachments": [str(files.report), str(files.docx), str(files.csv),
                                                             str(files.code)]})).structured
        with pytest.raises(ToolError, match="encrypted with a password"):
            await app.call("assistant.ask", {"text": "what does it say?", "attachments": [str(files.secret)]})
    assert out["steps"] == ["assistant.chat"]
    user = coordinator.calls[0][-1]["content"]
    for label in ("[Attachment 1: report.pdf (PDF, 2 pages)]", "[Attachment 2: guide.docx (Word document)]",
                  "[Attachment 3: sales.csv (CSV)]", "[Attachment 4: util.py (python source)]"):
        assert label in user
    assert user.startswith("Compare these files.") and "Revenue grew" in user and "IT desk" in user
    assert [d["name"] for d in out["documents"]] == ["report.pdf", "guide.docx", "sales.csv", "util.py"]


class AnswerArgs(msgspec.Struct, forbid_unknown_fields=True):
    image: str
    question: str


async def test_a_question_about_a_figure_shows_the_page_to_the_vision_model(app_for, files):
    asked: list = []

    async def answer(args: AnswerArgs) -> str:  # a stand-in for the VLM (none can run here)
        asked.append(args)
        return "A bar chart: the north region is the tallest bar."

    vision = SimpleNamespace(loom_register_tools=hookimpl(lambda register: register(answer, read_only=True)))
    app = app_for(extra={"vision": vision})
    async with app:
        out = await app.call("document.context", {"paths": [str(files.report)],
                                                  "question": "Which region leads in figure 1?"})
    assert asked and asked[0].image.startswith("data:image/png;base64,")
    assert "[p. 2 as the vision model sees it] A bar chart" in out.structured["text"]


async def test_a_reader_stuck_inside_a_page_is_abandoned(make_app):
    import time

    from plugins.document import _bounded

    with anyio.fail_after(10), pytest.raises(ToolError, match=r"took longer than 2.15 s and was abandoned"):
        await _bounded(SimpleNamespace(timeout=0.1), "/x/stuck.pdf", lambda: time.sleep(6))


async def test_follow_ups_in_a_conversation_still_see_the_document(app_for, files):
    coordinator = fake.FakeCoordinator()
    app = app_for("assistant", extra={"fake": fake.plugin(coordinator)}, config=fake.config())
    async with app:
        await app.call("assistant.ask", {"text": "Summarize this.", "attachments": [str(files.report)],
                                         "conversation": "doc"})
        out = (await app.call("assistant.ask", {"text": "What is the outlook?", "conversation": "doc"})).structured
        await app.call("assistant.ask", {"text": "What is the outlook?"})
    follow_up = coordinator.calls[1][-1]["content"]
    assert follow_up.startswith("What is the outlook?") and "[Attachment 1: report.pdf (PDF, 2 pages)]" in follow_up
    assert "Outlook: stable" in follow_up and [d["name"] for d in out["documents"]] == ["report.pdf"]
    assert "Attachment" not in coordinator.calls[2][-1]["content"]  # outside the conversation: no document
    # Turn 1's text is stored as the user typed it; the document is not repeated in the history.
    assert coordinator.calls[1][1] == {"role": "user", "content": "Summarize this."}
