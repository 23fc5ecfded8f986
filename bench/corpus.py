"""Real-text corpora for the benchmarks, built from what Debian installs on this machine.

No data set can be downloaded here, so the benchmarks read text that ships with the OS:

* man pages (``/usr/share/man``: English plus about 25 translated languages), converted
  from roff source to plain text with a small converter below (running ``man``/groff on
  21k pages would take longer than the benchmarks themselves);
* Python's HTML documentation (Debian ``python3.11-doc``), one document per page;
* the ``copyright`` file of every installed Debian package (licence texts: real, and
  naturally full of near-duplicates).

Each document has a stable ``id`` (sha1 of its source path), ``text``, ``lang`` (from the
man page's folder; "en" elsewhere), ``lang_score`` 1.0 (the benchmarks switch language ID
off) and ``source``. The JSONL is written sorted by id, atomically, and cached under
``$C2M_CACHE/bench`` keyed by the list of source files, so every benchmark in a run and
every rerun on the same machine reads byte-identical input.

    .venv-jobs/bin/python -m bench.corpus            # build (or reuse) and print its size
"""
from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import re
import sys
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

MAN_ROOT = Path("/usr/share/man")
PYDOC_ROOT = Path("/usr/share/doc/python3.11/html")
DEBDOC_ROOT = Path("/usr/share/doc")
CORPUS_VERSION = 2  # bump when the converters change: the cache key includes it
MIN_CHARS = 200


def cache_dir() -> Path:
    base = os.environ.get("C2M_CACHE") or os.path.expanduser("~/.cache/crawl2model")
    path = Path(base) / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- roff → text

_ROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),      # font changes \fB \f(CW \f[I]
    (re.compile(r"\\s[+-]?\d+"), ""),                 # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),     # string registers (pod2man quotes etc.)
    (re.compile(r"\\[nk](\[[^\]]*\]|\(..|.)"), ""),   # number registers, marks
    (re.compile(r"\\[hvwlLoxbDXZ]'[^']*'"), ""),       # motions and drawing
]
_NAMED = {"em": "—", "en": "–", "aq": "'", "dq": '"', "bu": "•", "co": "©", "lq": "“", "rq": "”",
          "oq": "‘", "cq": "’", "hy": "-", "mi": "-", "pl": "+", "ti": "~", "ha": "^", "rs": "\\",
          "ga": "`", "ul": "_", "Fo": "«", "Fc": "»", "de": "°", "mu": "×", "->": "→", "<-": "←"}
_NAMED_RE = re.compile(r"\\(\(..|\[[^\]]*\])")
_ACCENTS = {":": "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", ",": "\u0327",
            "o": "\u030a"}


def _named(code: str) -> str:
    """A named glyph: \\(:a → ä, \\['e] → é, \\[u00E4] → ä, \\(em → —; unknown ones vanish."""
    if code in _NAMED:
        return _NAMED[code]
    if code == "ss":
        return "ß"
    if len(code) == 2 and code[0] in _ACCENTS and code[1].isalpha():
        return unicodedata.normalize("NFC", code[1] + _ACCENTS[code[0]])
    if re.fullmatch(r"u[0-9A-Fa-f]{4,5}", code):
        return chr(int(code[1:], 16))
    return ""
_SIMPLE = {"\\-": "-", "\\e": "\\", "\\&": "", "\\ ": " ", "\\|": "", "\\^": "", "\\c": "", "\\%": "",
           "\\0": " ", "\\~": " ", "\\/": "", "\\,": "", "\\:": "", "\\)": "", "\\.": ".", "\\'": "'",
           "\\`": "`"}
_SIMPLE_RE = re.compile("|".join(re.escape(k) for k in _SIMPLE))
_SKIP_BLOCK = re.compile(r"^[.'](de|am|ig)\b")
_FONT_MACROS = {"B", "I", "BR", "RB", "BI", "IB", "IR", "RI", "SM", "SB", "UR", "MT", "Nm", "Ar", "Fl"}
_BREAK_MACROS = {"PP", "P", "LP", "HP", "sp", "Sp", "RS", "RE", "Pp", "IP", "TP", "TQ", "SH", "SS", "Sh", "Ss"}


def roff_inline(text: str) -> str:
    for pattern, repl in _ROFF_ESCAPES:
        text = pattern.sub(repl, text)
    text = _NAMED_RE.sub(lambda m: _named(m.group(1)[1:3] if m.group(1)[0] == "(" else m.group(1)[1:-1]), text)
    return _SIMPLE_RE.sub(lambda m: _SIMPLE[m.group(0)], text)


def _macro_args(rest: str) -> str:
    args = re.findall(r'"([^"]*)"|(\S+)', rest)
    return " ".join(a or b for a, b in args)


def roff_to_text(source: str) -> str:
    """Plain text of a man page: filled paragraphs split by blank lines, no-fill blocks kept as lines."""
    paragraphs: list[str] = []
    current: list[str] = []
    fill, skipping = True, False

    def flush():
        if current:
            paragraphs.append((" " if fill else "\n").join(current).strip())
            current.clear()

    for raw in source.split("\n"):
        if skipping:
            skipping = raw.strip() != ".."
            continue
        if _SKIP_BLOCK.match(raw):
            skipping = True
            continue
        if raw.startswith((".\\\"", "'\\\"", '.\\"')) or raw.strip() in (".", "'"):
            continue
        if raw.startswith((".", "'")):
            parts = raw[1:].strip().split(None, 1)
            name, rest = (parts + ["", ""])[:2] if parts else ("", "")
            if name in ("nf", "EX", "Vb"):
                flush(); fill = False
            elif name in ("fi", "EE", "Ve"):
                flush(); fill = True
            elif name in _BREAK_MACROS:
                flush()
                if rest and name in ("SH", "SS", "IP", "Sh", "Ss"):
                    paragraphs.append(roff_inline(_macro_args(rest) if name != "IP" else
                                                  _macro_args(rest).split(" ")[0]))
            elif name in _FONT_MACROS and rest:
                sep = "" if name in ("BR", "RB", "BI", "IB", "IR", "RI") else " "
                current.append(roff_inline(sep.join(re.findall(r'"[^"]*"|\S+', rest)).replace('"', "")))
            # every other request (.TH .ne .if .ie .ds .nr .ft .in .so …) is layout: skip it
            continue
        line = roff_inline(raw)
        if fill and not line.strip():
            flush()
        elif line.strip() or not fill:
            current.append(line.rstrip())
    flush()
    text = "\n\n".join(p for p in paragraphs if p.strip())
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def man_files() -> list[Path]:
    return sorted(p for p in MAN_ROOT.rglob("*.gz") if p.is_file() and not p.is_symlink())


def man_pages(files: list[Path]) -> Iterator[dict]:
    for path in files:
        source = _decode(gzip.open(path).read())
        if source.startswith(".so "):
            continue  # a redirect to another page
        rel = path.relative_to(MAN_ROOT)
        lang = "en" if rel.parts[0].startswith("man") else rel.parts[0].split("_")[0]
        yield {"text": roff_to_text(source), "lang": lang, "source": "manpage", "path": str(rel)}


# ---------------------------------------------------------------- HTML → text (Python docs)

_BLOCK = {"p", "div", "section", "li", "dt", "dd", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "br",
          "table", "ul", "ol", "dl", "blockquote", "article"}
_SKIP_TAGS = {"script", "style", "nav", "head", "footer"}


class _TextOf(HTMLParser):
    """The main body's text: block elements start new lines, scripts/navigation are skipped."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.in_body = False
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and (attrs.get("role") == "main" or "body" in (attrs.get("class") or "").split()):
            self.in_body = True
        if tag in _SKIP_TAGS or (tag == "a" and "headerlink" in (attrs.get("class") or "")):
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in _BLOCK:
            self.out.append("\n\n" if tag in ("p", "pre", "h1", "h2", "h3", "dt", "section") else "\n")

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS or tag == "a" and self.skip:
            self.skip = max(self.skip - 1, 0)
        if tag == "pre":
            self.pre = max(self.pre - 1, 0)
        if tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.in_body and not self.skip:
            self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(page: str) -> str:
    parser = _TextOf()
    parser.feed(page)
    text = html.unescape("".join(parser.out))
    lines = [line.strip() if not line.startswith(" ") else line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def python_doc_files() -> list[Path]:
    return sorted(p for p in PYDOC_ROOT.rglob("*.html") if p.is_file()) if PYDOC_ROOT.is_dir() else []


def python_docs(files: list[Path]) -> Iterator[dict]:
    for path in files:
        yield {"text": html_to_text(path.read_text("utf-8", errors="replace")), "lang": "en",
               "source": "pydoc", "path": str(path.relative_to(PYDOC_ROOT))}


def copyright_files() -> list[Path]:
    return sorted(p for p in DEBDOC_ROOT.glob("*/copyright") if p.is_file())


def copyrights(files: list[Path]) -> Iterator[dict]:
    for path in files:
        yield {"text": path.read_text("utf-8", errors="replace").strip(), "lang": "en", "source": "copyright",
               "path": str(path.relative_to(DEBDOC_ROOT))}


def changelog_files() -> list[Path]:
    return sorted(p for pattern in ("*/changelog*.gz", "*/NEWS*.gz") for p in DEBDOC_ROOT.glob(pattern)
                  if p.is_file())


def changelogs(files: list[Path]) -> Iterator[dict]:
    """Debian and upstream change logs and NEWS files: prose written by people (73 MB here).

    Packages built from one source ship the same file (libx11-6 and libx11-xcb1, ...); only
    the first copy of each content is kept, so the text is not repeated."""
    seen = set()
    for path in files:
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError):
            continue
        digest = hashlib.sha1(data).digest()
        if digest not in seen:
            seen.add(digest)
            yield {"text": data.decode("utf-8", errors="replace").strip(), "lang": "en",
                   "source": "changelog", "path": str(path.relative_to(DEBDOC_ROOT))}


# ---------------------------------------------------------------- the cached corpus

def _sources() -> list[tuple[str, list[Path]]]:
    return [("man", man_files()), ("pydoc", python_doc_files()), ("copyright", copyright_files())]


MAKERS = {"man": man_pages, "pydoc": python_docs, "copyright": copyrights, "changelog": changelogs}


def corpus_path() -> Path:
    """The cached real-text JSONL, built on first use (about 30 s on one core)."""
    sources = _sources()
    if not sources[0][1]:
        raise SystemExit(f"no man pages under {MAN_ROOT}: the benchmarks need Debian's man pages "
                         "(apt-get install man-db manpages) and python3.11-doc")
    return _cached("realtext", sources)


def changelog_path() -> Path:
    """A second cached JSONL of change logs, for the benchmarks that need more than the main
    corpus's ~110 MB of text (``bench/tokens.py`` reads it after the main one). Kept apart so
    that adding it changed none of the other benchmarks' inputs."""
    return _cached("changelogs", [("changelog", changelog_files())])


def _cached(name: str, sources: list[tuple[str, list[Path]]]) -> Path:
    """Documents of ``sources`` as one JSONL sorted by id, cached under a key of the file list."""
    key = hashlib.sha1(json.dumps([CORPUS_VERSION] + [[n, [str(p) for p in ps]] for n, ps in sources])
                       .encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}-{key}.jsonl"
    if path.exists():
        return path
    docs = {}
    for name, files in sources:
        for doc in MAKERS[name](files):
            if len(doc["text"]) >= MIN_CHARS:
                doc_id = _sha1(f"{doc['source']}:{doc['path']}")
                docs[doc_id] = {"id": doc_id, "text": doc["text"], "lang": doc["lang"], "lang_score": 1.0,
                                "source": doc["source"], "url": f"file:{doc['source']}/{doc['path']}"}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for doc_id in sorted(docs):
            fh.write(json.dumps(docs[doc_id], ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_docs(path: Path | str, limit: int | None = None) -> list[dict]:
    docs = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            docs.append(json.loads(line))
            if limit is not None and len(docs) >= limit:
                break
    return docs


def write_jsonl(docs, path: Path | str) -> Path:
    """Write documents atomically (temp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def shard_jsonl(docs: list[dict], folder: Path | str, shards: int) -> list[Path]:
    """Round-robin documents into ``shards`` files: datatrove splits its work by input file."""
    folder = Path(folder)
    return [write_jsonl(docs[i::shards], folder / f"part-{i:05d}.jsonl") for i in range(shards)]


def main() -> None:
    import collections

    path = corpus_path()
    docs = read_docs(path)
    chars = sum(len(d["text"]) for d in docs)
    by_source = collections.Counter(d["source"] for d in docs)
    langs = collections.Counter(d["lang"] for d in docs)
    print(f"{path}: {len(docs)} documents, {chars / 1e6:.1f} M characters, "
          f"{os.path.getsize(path) / 1e6:.1f} MB; by source {dict(by_source)}; "
          f"{len(langs)} languages {dict(langs.most_common(8))}")


if __name__ == "__main__":
    sys.exit(main())
