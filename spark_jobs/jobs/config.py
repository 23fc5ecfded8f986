"""The settings of every data stage, each declared once (:mod:`ops.lake.jobconfig`).

A stage's flags (``spark_jobs/jobs/<stage>.py``), the data_refresh DAG's Params
(:mod:`ops.dagkit.dag_params`) and the flags the DAG passes (:mod:`ops.dagkit.flags`)
are all derived from these classes. The flags every stage shares (``--root``, ``--version``,
``--input-version``, ``--input-jsonl``) are in :mod:`spark_jobs.jobs._args`: the DAG decides
them per run, they are not settings. Pure Python: the Airflow venv imports this module to
build the forms.
"""
from __future__ import annotations

from dataclasses import dataclass

from ops.lake.jobconfig import setting
from ops.lake.vocab import BPE, KINDS
from spark_jobs.tokens.trainers import NORMALIZERS

DEFAULT_UA = "crawl2model/0.1 (+https://example.invalid/bot)"
HOST_PATTERN = r"^[A-Za-z0-9.-]+(:\d+)?$"
URL_PATTERN = r"^https?://\S+$"
WARC_GLOB_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,62}/\S+|/\S+)$"
_VERSION = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
DEDUP_AGAINST_PATTERN = rf"^(earlier|none|{_VERSION}(,{_VERSION})*)$"


@dataclass
class CrawlSettings:
    """spark_jobs/jobs/crawl.py: a polite BFS crawl of seed sites."""
    seeds: list[str] = setting([], "seed URLs", title="Seed URLs", required=True,
                               item_pattern=URL_PATTERN, min_items=1, max_items=1000)
    allow_domains: list[str] = setting(
        [], "host or host:port the crawler may visit; empty = the seeds' host:port",
        title="Allowed domains", item_pattern=HOST_PATTERN)
    allow_private: bool = setting(
        False, "also fetch loopback/private addresses (the local demo site is on 127.0.0.1); off by "
        "default: a crawl must not reach internal services. Link-local and cloud metadata addresses "
        "stay refused either way", title="Allow private addresses")
    max_pages: int = setting(150, "most URLs to fetch", minimum=1, maximum=1_000_000)
    max_depth: int = setting(3, "link hops from a seed", minimum=0, maximum=50)
    delay: float = setting(1.0, "seconds between requests to one host (a larger robots.txt Crawl-delay "
                           "wins)", title="Delay (s)", minimum=0.0, maximum=600.0)
    max_crawl_delay: float = setting(
        60.0, "longest robots.txt Crawl-delay honoured, in seconds: a host asking for more is not "
        "crawled, its URLs are logged as crawl_delay_too_long", minimum=0.0)
    user_agent: str = setting(DEFAULT_UA, "sent with every request and matched against robots.txt",
                              title="User-Agent", max_length=300)
    timeout: float = setting(10.0, "seconds to connect, and most seconds between two reads of a response",
                             exclusive_minimum=0.0)
    fetch_deadline: float = setting(
        60.0, "most seconds for one attempt, body included: a server that drips bytes fails as "
        "fetch_deadline (not retried)", title="Fetch deadline (s)", minimum=1.0, maximum=3600.0)
    max_bytes: int = setting(5 * 1024 * 1024, "largest page to store", minimum=1)
    max_retries: int = setting(
        3, "retries of a 429, 5xx, timeout or connection error (refused, reset) per URL, with exponential "
        "backoff and jitter (a Retry-After header is honoured)", title="Retries per URL",
        minimum=0, maximum=20)
    backoff_base: float = setting(
        1.0, "seconds: retry n waits between half and all of base * 2^n (capped by --backoff-max)",
        minimum=0.0)
    backoff_max: float = setting(
        60.0, "longest backoff wait in seconds (a server's Retry-After is honoured even when longer, "
        "within --retry-budget)", minimum=0.0)
    retry_budget: float = setting(
        120.0, "seconds per URL for all attempts and waits; past it the URL fails as budget_exhausted",
        title="Retry budget (s)", minimum=1.0, maximum=3600.0)
    checkpoint_every: int = setting(
        20, "URLs per host between checkpoints: a killed crawl refetches at most one such round", minimum=1)
    restart: bool = setting(
        False, "discard the saved progress of this --version and crawl from the seeds (by default a "
        "rerun resumes, and a published crawl is not fetched again)", param=False)


@dataclass
class IngestSettings:
    """spark_jobs/jobs/ingest.py: existing WARC/WET/ARC files into raw/v=V."""
    warc_glob: str | None = setting(
        None, "WARC/WET/ARC files to ingest (data_refresh: when Source is warc or both): a local glob "
        "(/data/cc/*.warc.gz) or s3://bucket/prefix/*.warc.wet.gz",
        title="WARC glob", required=True, pattern=WARC_GLOB_PATTERN)


@dataclass
class ExtractSettings:
    """spark_jobs/jobs/extract.py: main text, title and language from crawled HTML."""
    max_page_bytes: int = setting(2 * 1024 * 1024, "skip larger pages as too_large (extraction time "
                                  "grows with size)", minimum=1)
    page_timeout: float = setting(30.0, "seconds to extract one page; slower pages are dropped as "
                                  "extract_timeout (0 = no limit)", minimum=0.0)
    warc_glob: str | None = setting(None, "read existing WARC/WET files (local or s3:// glob) instead of "
                                    "raw/v=V", param=False)


def step_overrides(value: str) -> dict:
    """``--filter-config``: a JSON object of objects keyed by step name."""
    import argparse
    import json

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}); pass an object keyed by step name") \
            from None
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise argparse.ArgumentTypeError(
            'must be a JSON object of objects, e.g. \'{"gopher_quality": {"min_words": 100}}\'')
    return parsed


@dataclass
class CleanSettings:
    """spark_jobs/jobs/clean.py: normalise text, drop low-quality documents with named reasons."""
    langs: list[str] = setting(["en"], "ISO 639-1 codes to keep", title="Languages",
                               item_pattern="^[a-z]{2}$", min_items=1)
    min_lang_score: float = setting(0.5, "least language-ID probability to keep a document",
                                    title="Min language score", minimum=0.0, maximum=1.0)
    filter_profile: str = setting(
        "docs", "threshold profile: 'paper' (the papers' values) or 'docs' (relaxed repetition rules for "
        "software documentation; see spark_jobs/clean/steps.py)", choices=("docs", "paper"))
    filter_config: dict = setting(
        {}, "JSON overrides per step on top of the profile, e.g. "
        "'{\"fineweb_quality\": {\"max_char_dup_ratio\": 0.05}}'", parse=step_overrides)
    redact_pii: bool = setting(True, "redact e-mails, IP addresses and phone numbers (--no-pii-redaction "
                               "keeps them as they are)",
                               flag="--no-pii-redaction")


@dataclass
class DedupSettings:
    """spark_jobs/jobs/dedup.py: exact, then MinHash-LSH near dedup, also against earlier versions."""
    near_dedup: bool = setting(True, "MinHash-LSH near dedup after exact dedup (off, --no-near-dedup: exact "
                               "dedup only, no cross-version dedup, no signatures saved)",
                               title="Near-duplicate removal")
    bands: int = setting(14, "LSH bands (FineWeb: 14)", minimum=1)
    rows: int = setting(8, "signature rows per band (FineWeb: 8)", minimum=1)
    threshold: float | None = setting(
        None, "Jaccard similarity counted as a near duplicate: bands x rows are chosen for it within "
        "--bands·--rows hashes; empty = FineWeb's 14 bands x 8 rows", title="Near-dup threshold",
        minimum=0.5, maximum=0.99, param="dedup_threshold")
    ngram: int = setting(5, "words per shingle", minimum=1)
    minhash_seed: int = setting(1, "seed of the hash permutations")
    dedup_against: str = setting(
        "earlier", "earlier: also drop what every finished corpus version created before this run holds; "
        "none: this version only; or a comma-separated list of corpus versions",
        pattern=DEDUP_AGAINST_PATTERN)


@dataclass
class TokenizeSettings:
    """spark_jobs/jobs/tokenize.py: train a tokenizer, write packed token shards."""
    tokenizer: str = setting(BPE, "bpe (GPT-2 byte-level), wordpiece (BERT) or unigram (SentencePiece/T5)",
                             choices=KINDS)
    tokenizer_file: str | None = setting(
        None, "reuse this tokenizer.json instead of training one (keeps the vocabulary stable)")
    vocab_size: int = setting(4096, "tokenizer vocabulary size", title="Vocabulary size",
                              minimum=256, maximum=1_048_576)
    normalizer: str = setting("auto", "text normalisation before tokenizing (auto: none for bpe, bert for "
                              "wordpiece, nfkc for unigram)", choices=NORMALIZERS)
    extra_ids: int = setting(32, "sentinel tokens reserved for span corruption (T5's <extra_id_N>)",
                             minimum=0)
    special_tokens: list[str] = setting([], "more special tokens, added after the family's own")
    seq_len: int = setting(128, "tokens per packed training sequence", title="Sequence length",
                           minimum=8, maximum=65_536)
    val_fraction: float = setting(0.05, "share of documents (by id hash) held out for validation",
                                  title="Validation fraction", minimum=0.0, maximum=0.5)
    sample_fraction: float = setting(1.0, "share of documents the tokenizer is trained on (all are "
                                     "encoded)", exclusive_minimum=0.0, maximum=1.0)
    min_frequency: int = setting(2, "least pair count for a BPE/WordPiece merge (Unigram ignores it)",
                                 minimum=0)
    shard_tokens: int = setting(50_000_000, "target tokens per shard file (decides the number of files)",
                                minimum=1)


SETTINGS = {"crawl": CrawlSettings, "ingest": IngestSettings, "extract": ExtractSettings,
            "clean": CleanSettings, "dedup": DedupSettings, "tokenize": TokenizeSettings}
