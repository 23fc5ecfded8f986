"""Python API signature -> first sentence of its documentation: the built-in generation set.

Why this set: fine-tuning needs real prompt -> continuation pairs that are on this machine
without a download, and Debian's ``python3.11-doc`` (already installed: the demo crawls its
HTML) ships the reStructuredText sources of the library reference under
``/usr/share/doc/python3.11/html/_sources/library``. Every ``.. function::``,
``.. method::``, ``.. class::`` ... directive there pairs a signature written by the
CPython authors with a description whose first sentence says what the object does, e.g.

    prompt:     ``json.dumps(obj, *, skipkeys=False, ...)`` + newline
    completion: ``Serialize obj to a JSON formatted str using this conversion table.``

So the task is short, factual, English text conditioned on code: the platform's own
domain. Be aware of one thing when reading results: the demo pretrains on the *HTML* of
these same docs, so a base model pretrained on the demo corpus has seen these sentences
in running text (never as signature -> sentence pairs). Random-init baselines have not.

Pairs are cleaned of reST markup (roles, literals, emphasis), kept when the sentence has
3-60 words, and dropped with a counted reason otherwise. The split is by a hash of the
prompt (the polarity rule), so it is the same everywhere and one API never sits in two
splits; ``max_examples`` keeps a fixed hash-ordered subset for tests.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from training.data.polarity import SPLITS, split_of

DOC_ROOT = "/usr/share/doc/python3.11/html/_sources/library"
INSTALL_HINT = (
    "install Debian's python3.11-doc (`apt-get install -y python3.11-doc`) or set C2M_PYDOC_SOURCES"
)
OBJECTS = ("function", "method", "classmethod", "staticmethod", "class", "exception", "decorator",
           "coroutinefunction", "coroutinemethod", "abstractmethod")
MIN_WORDS, MAX_WORDS = 3, 60
# Drop reasons (stat keys): every directive found ends kept or under one of these.
NO_DESCRIPTION, TOO_SHORT, TOO_LONG, DUPLICATE = "no_description", "too_short", "too_long", "duplicate"

_DIRECTIVE = re.compile(r"^(\s*)\.\. (%s)::\s*(.*)$" % "|".join(OBJECTS))
_MODULE = re.compile(r"^\.\. (?:module|currentmodule|py:module|py:currentmodule)::\s*(\S+)")
_ROLE = re.compile(r":[\w:.-]+:`([^`]*)`")
_ABBREV = ("e.g.", "i.e.", "etc.", "vs.", "approx.", "resp.", "cf.", "Ex.", "No.")


class PydocSourcesMissing(FileNotFoundError):
    """The python3.11-doc reST sources are not installed."""


@dataclass(frozen=True)
class Pair:
    prompt: str
    completion: str


@dataclass
class PairData:
    """Prompt/completion splits, as every generation data set (built-in or JSONL) arrives."""

    name: str
    splits: dict[str, list[Pair]]
    source: Path
    dropped: dict[str, int] = field(default_factory=dict)
    labels: tuple[str, ...] = ()  # generation has none; present for callers that read it


def source_dir() -> Path:
    path = Path(os.environ.get("C2M_PYDOC_SOURCES") or DOC_ROOT)
    if not path.is_dir() or not any(path.glob("*.rst.txt")):
        raise PydocSourcesMissing(f"no Python reST sources (*.rst.txt) in {path}; {INSTALL_HINT}")
    return path


def _role_text(match: re.Match) -> str:
    """``:class:`conversion table <x>``` -> conversion table; ``:func:`~a.b``` -> b; ``!x`` -> x."""
    text = match.group(1)
    if "<" in text and text.endswith(">"):
        return text[: text.index("<")].strip()
    text = text.lstrip("!")
    return text.split(".")[-1] if text.startswith("~") else text


def clean_rst(text: str) -> str:
    """Inline reST -> plain text: roles, ``literals``, *emphasis*, `links`_, escapes."""
    text = _ROLE.sub(_role_text, text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`<]*?)\s*(<[^>]*>)?`_{1,2}", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*", lambda m: m.group(1) or m.group(2), text)
    text = text.replace("\\ ", "").replace("\\", "")
    return " ".join(text.replace("~", "").split())


def first_sentence(paragraph: str) -> str:
    """Up to the first ``. ``/``? ``/``! `` that is not an abbreviation, or the whole paragraph.

    The next sentence may start in lower case (a parameter name: ``offset defaults to ...``),
    so any full stop followed by a space ends the sentence.
    """
    for m in re.finditer(r"[.!?](?=\s|$)", paragraph):
        head = paragraph[: m.end()]
        if not head.endswith(_ABBREV):
            return head
    return paragraph


def _qualify(signature: str, module: str, classes: list[tuple[int, str]], kind: str) -> str:
    name = signature.split("(")[0].strip()
    prefix = ".".join([module] * bool(module) + [c for _, c in classes])
    if prefix and not name.startswith(f"{prefix}.") and not (module and name.startswith(f"{module}.")):
        signature = f"{prefix}.{signature}"
    return f"{kind} {signature}" if kind in ("class", "exception", "decorator") else signature


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_file(text: str) -> list[tuple[str, str | None]]:
    """(prompt, first description paragraph or None) for each object directive, in file order."""
    lines = text.splitlines()
    out, module, classes, i = [], "", [], 0
    while i < len(lines):
        line = lines[i]
        if m := _MODULE.match(line):
            module, classes = m.group(1), []
        m = _DIRECTIVE.match(line)
        if not m:
            i += 1
            continue
        indent, kind, signature = len(m.group(1)), m.group(2), m.group(3)
        while signature.endswith("\\") and i + 1 < len(lines):  # signatures continued with a backslash
            i += 1
            signature = signature[:-1].rstrip() + " " + lines[i].strip()
        classes = [(d, c) for d, c in classes if d < indent]
        prompt = _qualify(" ".join(signature.split()), module, classes, kind)
        # Skip further signatures and :options: up to the blank line, then read the first plain paragraph.
        i += 1
        while i < len(lines) and lines[i].strip():
            i += 1
        paragraph, body_indent = None, None
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
            stripped = lines[i].strip()
            body_indent = body_indent or (_indent(lines[i]) if stripped else None)
            # A paragraph at the body's own indent; nested directives (notes, versionadded) do not count.
            if stripped and _indent(lines[i]) == body_indent and not stripped.startswith(".. "):
                body = []
                while i < len(lines) and lines[i].strip():
                    body.append(lines[i].strip())
                    i += 1
                paragraph = " ".join(body)
                break
            i += 1
        out.append((prompt + "\n", paragraph))
        if kind in ("class", "exception"):
            classes.append((indent, signature.split("(")[0].strip().split(".")[-1]))
    return out


def read_pairs(directory: Path | None = None) -> tuple[list[Pair], dict[str, int]]:
    """All kept pairs (files in name order) and the drop counts by reason."""
    pairs, dropped, seen = [], Counter(), set()
    for path in sorted((directory or source_dir()).glob("*.rst.txt")):
        for prompt, paragraph in parse_file(path.read_text(encoding="utf-8", errors="replace")):
            sentence = first_sentence(clean_rst(paragraph)) if paragraph else ""
            words = len(sentence.split())
            reason = (
                NO_DESCRIPTION if not sentence
                else TOO_SHORT if words < MIN_WORDS
                else TOO_LONG if words > MAX_WORDS
                else DUPLICATE if prompt in seen
                else None
            )
            if reason:
                dropped[reason] += 1
                continue
            seen.add(prompt)
            pairs.append(Pair(prompt, sentence))
    return pairs, dict(dropped)


def load_splits(max_examples: int = 0, directory: Path | None = None) -> PairData:
    """``train``/``val``/``test`` pairs; ``max_examples`` keeps a fixed hash-ordered subset."""
    src = directory or source_dir()
    pairs, dropped = read_pairs(src)
    if max_examples:
        pairs = sorted(pairs, key=lambda p: hashlib.sha1(p.prompt.encode("utf-8")).digest())[:max_examples]
    splits: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        splits[split_of(pair.prompt)].append(pair)
    return PairData("python311-doc-signatures", splits, src, dropped)
