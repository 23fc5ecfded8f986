"""OURS: the clean stage's quality filters. REFERENCE: datatrove 0.10.1's Gopher repetition +
Gopher quality + C4 quality filters. Same JSONL of real documents, same number of cores.

    .venv-jobs/bin/python -m bench.data_filters                 # whole corpus (~22k docs), 2 cores
    .venv-jobs/bin/python -m bench.data_filters --docs 3000 --no-spark

Rows measured (docs/s, all on ``--cores`` processes reading the same sharded JSONL):
* ``ours: 3 filters``: Gopher quality, Gopher repetition and C4 with the ``paper`` profile,
  the like-for-like set;
* ``ours: clean stage``: every clean step (normalise, PII, boilerplate lines, signals, the
  filters above and FineWeb) with language ID off (documents bring ``lang``), plain Python;
* ``ours: clean stage, Spark``: ``spark_jobs/jobs/clean.py`` on ``local[cores]``, start-up
  reported apart;
* ``datatrove``: its LocalPipelineExecutor, one task per shard, ``--cores`` workers.

Agreement compares keep/drop per document id; the disagreements are tallied by the reason
each side gave, which shows where the rule sets differ (datatrove's Gopher quality also
has stop-word, bullet and ellipsis-line rules; our C4 counts sentences by regex, not spaCy).
"""
import argparse
import collections
import json
import multiprocessing
import shutil
from pathlib import Path

from bench.common import (JOBS_PY, REPO, PeakRSS, job_env, last_json_line, ratio, require_datatrove,
                          run_measured, table, timed, work_dir, write_result)
from bench.corpus import corpus_path, read_docs, shard_jsonl, write_jsonl
from ops.lake.datasets import DatasetVersion

KEPT = None


def our_steps(kind: str) -> list:
    """The project's own step objects: the whole clean stage (no language ID), or its three paper filters."""
    from spark_jobs.clean.filters import (C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter,
                                          LanguageFilter)
    from spark_jobs.clean.signals import QualitySignals
    from spark_jobs.clean.steps import default_steps
    from spark_jobs.extract.steps import IdentifyLanguage

    steps = [s for s in default_steps((), 0.0, profile="paper") if not isinstance(s, (IdentifyLanguage, LanguageFilter))]
    if kind == "filters":
        steps = [s for s in steps if isinstance(s, (QualitySignals, GopherQualityFilter, GopherRepetitionFilter,
                                                    C4QualityFilter))]
    return steps


def _run_shard(job: tuple[str, str]) -> list[tuple[str, str | None]]:
    from spark_jobs.steps import apply_steps

    path, kind = job
    steps = our_steps(kind)
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            _, reason = apply_steps(doc, steps)
            out.append((doc["id"], reason))
    return out


def run_ours_plain(shards: list[Path], kind: str, cores: int) -> dict:
    ctx = multiprocessing.get_context("fork")
    with PeakRSS() as mem, timed() as t:
        with ctx.Pool(cores) as pool:
            parts = pool.map(_run_shard, [(str(p), kind) for p in shards], chunksize=1)
    decisions = dict(pair for part in parts for pair in part)
    return {"seconds": t.seconds, "peak_rss_mb": mem.peak_mb, "decisions": decisions}


def run_datatrove(shard_dir: Path, out: Path, cores: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    res = run_measured([require_datatrove(), REPO / "bench" / "_datatrove_filters.py", shard_dir, out,
                        "--workers", cores], env=job_env(cores))
    inner = last_json_line(res["stdout"])
    decisions = {}
    for f in (out / "kept").glob("*.jsonl"):
        decisions.update((json.loads(line)["id"], KEPT) for line in f.open())
    for f in (out / "dropped").rglob("*.jsonl"):
        for line in f.open():
            rec = json.loads(line)
            decisions[rec["id"]] = f"dt_{rec['reason']}"
    return {"seconds": inner["seconds"], "process_seconds": res["seconds"], "peak_rss_mb": res["peak_rss_mb"],
            "decisions": decisions}


def run_spark(jsonl: Path, root: Path, cores: int) -> dict:
    import pyarrow.parquet as pq

    shutil.rmtree(root, ignore_errors=True)
    from ops.launch.local import LOCAL_JAVA_OPTIONS

    # the JVM options ops/launch/local.spark_submit_command gives the clean job locally
    cmd = [JOBS_PY.parent / "spark-submit", "--master", f"local[{cores}]", "--driver-memory", "3g",
           "--driver-java-options", LOCAL_JAVA_OPTIONS["clean"],
           REPO / "bench" / "_spark_stage.py", "clean", "--", "--root", root, "--version", "bench",
           "--input-jsonl", jsonl, "--filter-profile", "paper", "--langs", "", "--min-lang-score", "0"]
    res = run_measured(cmd, env=job_env(cores))
    inner = last_json_line(res["stdout"])
    folder = Path(DatasetVersion(str(root), "clean", "bench").data_uri)  # the generation its manifest names
    decisions = {}
    for f in folder.glob("part-*.parquet"):
        decisions.update((i, KEPT) for i in pq.read_table(f, columns=["id"]).column("id").to_pylist())
    for f in (folder / "removed").rglob("*.parquet"):
        reason = f.relative_to(folder / "removed").parts[0]
        decisions.update((i, reason) for i in pq.read_table(f, columns=["id"]).column("id").to_pylist())
    return {"seconds": inner["stage_s"], "startup_s": inner["startup_s"], "process_seconds": res["seconds"],
            "peak_rss_mb": res["peak_rss_mb"], "decisions": decisions}


def agreement(ours: dict, ref: dict) -> dict:
    """Keep/drop confusion by id, Cohen's kappa, and the reasons behind the disagreements."""
    ids = sorted(set(ours) & set(ref))
    if len(ids) != len(ours) or len(ids) != len(ref):
        raise RuntimeError(f"decision sets differ: ours {len(ours)}, reference {len(ref)}, shared {len(ids)}")
    c = collections.Counter((ours[i] is KEPT, ref[i] is KEPT) for i in ids)
    n = len(ids)
    agree = (c[(True, True)] + c[(False, False)]) / n
    p_keep = ((c[(True, True)] + c[(True, False)]) / n) * ((c[(True, True)] + c[(False, True)]) / n)
    p_drop = ((c[(False, False)] + c[(False, True)]) / n) * ((c[(False, False)] + c[(True, False)]) / n)
    expected = p_keep + p_drop
    only_ours = collections.Counter(ours[i] for i in ids if ours[i] is not KEPT and ref[i] is KEPT)
    only_ref = collections.Counter(ref[i] for i in ids if ref[i] is not KEPT and ours[i] is KEPT)
    return {"docs": n, "both_keep": c[(True, True)], "both_drop": c[(False, False)],
            "ours_drop_ref_keep": c[(False, True)], "ours_keep_ref_drop": c[(True, False)],
            "agreement": round(agree, 4), "cohen_kappa": round((agree - expected) / (1 - expected), 4) if expected < 1 else None,
            "kept_ours": round((c[(True, True)] + c[(True, False)]) / n, 4),
            "kept_ref": round((c[(True, True)] + c[(False, True)]) / n, 4),
            "ours_only_drop_reasons": dict(only_ours.most_common(8)),
            "ref_only_drop_reasons": dict(only_ref.most_common(8))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=0, help="first N documents of the corpus (0 = all, ~22k)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--shards", type=int, default=0, help="input files (default 4 per core, so work balances)")
    p.add_argument("--no-spark", action="store_true", help="skip the spark-submit run")
    args = p.parse_args(argv)

    docs = read_docs(corpus_path(), args.docs or None)
    n = len(docs)
    work = work_dir("data_filters")
    jsonl = write_jsonl(docs, work / "input.jsonl")
    shards = shard_jsonl(docs, work / "shards", args.shards or 4 * args.cores)
    chars = sum(len(d["text"]) for d in docs)
    del docs
    print(f"[data_filters] {n} documents, {chars / 1e6:.1f} M chars, {len(shards)} shards, {args.cores} cores",
          flush=True)

    runs = {}
    runs["datatrove"] = run_datatrove(work / "shards", work / "datatrove", args.cores)
    runs["ours_filters"] = run_ours_plain(shards, "filters", args.cores)
    runs["ours_stage"] = run_ours_plain(shards, "stage", args.cores)
    if not args.no_spark:
        runs["ours_stage_spark"] = run_spark(jsonl, work / "spark-data", args.cores)

    labels = {"ours_filters": "ours: 3 filters (plain Python)", "ours_stage": "ours: clean stage (plain Python)",
              "ours_stage_spark": "ours: clean stage (Spark local)", "datatrove": "datatrove: 3 filters"}
    ref_rate = n / runs["datatrove"]["seconds"]
    rows, results = [], {}
    for key, run in runs.items():
        rate = n / run["seconds"]
        agree = agreement(run["decisions"], runs["datatrove"]["decisions"]) if key != "datatrove" else None
        results[key] = {k: v for k, v in run.items() if k != "decisions"} | {"docs_per_s": round(rate, 1),
                                                                              "ratio_vs_datatrove": ratio(rate, ref_rate),
                                                                              "agreement_vs_datatrove": agree}
        rows.append([labels[key], round(run["seconds"], 1), round(rate, 1), ratio(rate, ref_rate),
                     run["peak_rss_mb"], agree["agreement"] if agree else "", agree["cohen_kappa"] if agree else "",
                     round(sum(v is KEPT for v in run["decisions"].values()) / n, 3)])
    if "ours_stage_spark" in runs:
        same = agreement(runs["ours_stage_spark"]["decisions"], runs["ours_stage"]["decisions"])
        results["spark_vs_plain_agreement"] = same["agreement"]
    print(table(rows, ["run", "seconds", "docs/s", "× datatrove", "peak RSS MB", "agree", "kappa", "kept"]))
    if "ours_stage_spark" in runs:
        print(f"Spark start-up (not in the stage time): {runs['ours_stage_spark']['startup_s']:.1f} s; "
              f"Spark vs plain-Python decisions agree on {results['spark_vs_plain_agreement']:.2%} of documents")
    a = results["ours_filters"]["agreement_vs_datatrove"]
    print(f"3 filters vs datatrove: dropped only by ours {a['ours_drop_ref_keep']} "
          f"({a['ours_only_drop_reasons']}); only by datatrove {a['ours_keep_ref_drop']} ({a['ref_only_drop_reasons']})")
    write_result("data_filters", {"docs": n, "chars": chars, "cores": args.cores, "shards": len(shards),
                                  "runs": results})


if __name__ == "__main__":
    main()
