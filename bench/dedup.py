"""OURS: the dedup stage's MinHash-LSH (spark_jobs/dedup, local[cores]). REFERENCE: datatrove
0.10.1's 4-stage MinHash (signatures, buckets, cluster, filter). Both 5-grams, 14 bands × 8.

    .venv-jobs/bin/python -m bench.dedup                            # sizes 4000,8000,16000
    .venv-jobs/bin/python -m bench.dedup --sizes 1000 --threshold 0.7
    .venv-jobs/bin/python -m bench.dedup --sizes 2000,4000 --repeats 3   # interleaved, medians

For each size the script builds a near-duplicate benchmark from the real-text corpus: base
documents, and for half of them 1-3 copies with 5-30% of their words edited (scattered or
in one block). The truth is exact: every pair of documents in the set (generated or
naturally similar, e.g. licence texts) with word-5-gram Jaccard >= ``--threshold`` is found
by an exact similarity join; clusters should shrink to one document. Both removed sets are
scored by precision / recall / F1 (bench/neardup.py). Throughput is documents over the
stage's time (Spark start-up reported apart) and, as ``with start-up``, over each side's
whole process (spark-submit's JVM and session; datatrove's interpreter and imports);
memory is the peak RSS of each side's process tree. ``--repeats N`` runs the two sides
alternately N times and reports medians, so a load change on a shared machine hits both.
"""
import argparse
import hashlib
import json
import random
import shutil
import statistics
from pathlib import Path

from bench.common import (JOBS_PY, REPO, job_env, last_json_line, ratio, require_datatrove, run_measured,
                          table, timed, work_dir, write_result)
from bench.corpus import corpus_path, read_docs, shard_jsonl, write_jsonl
from bench.neardup import (components, hashed_shingles, jaccard, make_variant, removal_scores,
                           shingle_set, similarity_join, words_of)

J_BANDS = [(0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)]


def build_benchmark(pool: list[dict], total: int, seed: int = 0) -> tuple[list[dict], list[tuple[int, int]]]:
    """About ``total`` documents: base documents plus edited copies; returns (docs, (base, copy) index pairs)."""
    rng = random.Random(seed)
    vocab = [w for d in pool[:200] for w in words_of(d["text"])][:50_000]
    docs, generated = [], []
    for base in pool:
        if len(docs) >= total:
            break
        if len(words_of(base["text"])) < 30:
            continue
        b = len(docs)
        docs.append({"id": base["id"], "text": base["text"]})
        if rng.random() < 0.5:
            for k in range(rng.choice((1, 2, 3))):
                rate, style = rng.uniform(0.05, 0.30), rng.choice(("scattered", "block"))
                text = make_variant(base["text"], rate, rng, vocab, style)
                docs.append({"id": hashlib.sha1(f"{base['id']}:{k}".encode()).hexdigest(), "text": text,
                             "edit_rate": round(rate, 3), "edit_style": style})
                generated.append((b, len(docs) - 1))
    return docs[:total], [(a, b) for a, b in generated if b < total]


def truth(docs: list[dict], threshold: float) -> tuple[list[int], int]:
    """Cluster label per document from the exact join (hashed candidates, exact tuple-set check)."""
    hashed = [hashed_shingles(d["text"]) for d in docs]
    pairs = [(i, j) for i, j in similarity_join(hashed, threshold - 0.02)
             if jaccard(shingle_set(docs[i]["text"]), shingle_set(docs[j]["text"])) >= threshold]
    return components(len(docs), pairs), len(pairs)


def removed_by_band(docs, generated, removed: set[int]) -> dict:
    """Per true-Jaccard band of (base, copy) pairs: the share where at least one of the two was removed."""
    out = {}
    for lo, hi in J_BANDS:
        sel = [p for p in generated if lo <= docs[p[1]]["true_j"] < hi]
        out[f"{lo:.1f}-{min(hi, 1.0):.1f}"] = {"pairs": len(sel), "caught": round(
            sum(1 for a, b in sel if a in removed or b in removed) / len(sel), 3) if sel else None}
    return out


def run_ours(jsonl: Path, work: Path, cores: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    from ops.launch.local import LOCAL_JAVA_OPTIONS

    # the JVM options ops/launch/local.spark_submit_command gives the dedup job locally
    cmd = [JOBS_PY.parent / "spark-submit", "--master", f"local[{cores}]", "--driver-memory", "3g",
           "--driver-java-options", LOCAL_JAVA_OPTIONS["dedup"], REPO / "bench" / "_spark_dedup.py", jsonl, work]
    res = run_measured(cmd, env=job_env(cores))
    inner = last_json_line(res["stdout"])
    import pyarrow.parquet as pq

    table_ = pq.read_table(work / "removed")
    stages = inner["stage_seconds"]
    return {"seconds": sum(v for k, v in stages.items() if k != "startup"), "startup_s": stages["startup"],
            "wall_s": res["seconds"], "stage_seconds": stages, "peak_rss_mb": res["peak_rss_mb"],
            "candidate_edges": inner["candidate_edges"],
            "removed_ids": set(table_.column("id").to_pylist()),
            "reasons": dict(zip(*[c.to_pylist() for c in table_.group_by("reason").aggregate([("id", "count")])
                                  .select(["reason", "id_count"]).columns]))}


def run_ref(shard_dir: Path, work: Path, cores: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    res = run_measured([require_datatrove(), REPO / "bench" / "_datatrove_dedup.py", shard_dir, work,
                        "--workers", cores], env=job_env(cores))
    inner = last_json_line(res["stdout"])
    removed = {json.loads(line)["id"] for f in (work / "removed").glob("*.jsonl") for line in f.open()}
    return {"seconds": inner["seconds"], "wall_s": res["seconds"], "stage_seconds": inner["stage_seconds"],
            "peak_rss_mb": res["peak_rss_mb"], "removed_ids": removed}


def _median_run(results: list[dict]) -> dict:
    """The last run's outputs with the median of each timing; every run's timings are kept."""
    res = dict(results[-1])
    for key in ("seconds", "wall_s", "startup_s"):
        if key in res:
            res[key] = statistics.median(r[key] for r in results)
            res[f"{key}_runs"] = [round(r[key], 2) for r in results]
    res["stage_seconds"] = {k: statistics.median(r["stage_seconds"][k] for r in results)
                            for k in res["stage_seconds"]}
    res["peak_rss_mb"] = max(r["peak_rss_mb"] for r in results)
    if any(r["removed_ids"] != res["removed_ids"] for r in results):
        raise RuntimeError("a side removed different documents on a repeat: the dedup is not deterministic")
    return res


def run_size(pool, size, args) -> dict:
    work = work_dir(f"dedup/{size}")
    docs, generated = build_benchmark(pool, size, seed=args.seed)
    with timed() as t_truth:
        labels, n_pairs = truth(docs, args.threshold)
    for a, b in generated:
        docs[b]["true_j"] = jaccard(shingle_set(docs[a]["text"]), shingle_set(docs[b]["text"]))
    jsonl = write_jsonl(({"id": d["id"], "text": d["text"]} for d in docs), work / "input.jsonl")
    shard_dir = work / "shards"
    shutil.rmtree(shard_dir, ignore_errors=True)
    shard_jsonl([{"id": d["id"], "text": d["text"]} for d in docs], shard_dir, 4 * args.cores)
    index = {d["id"]: i for i, d in enumerate(docs)}
    print(f"[dedup] size {len(docs)}: {len(generated)} generated copies, {n_pairs} true pairs (J >= "
          f"{args.threshold}), truth join {t_truth.seconds:.1f} s", flush=True)

    out = {"docs": len(docs), "generated_copies": len(generated), "true_pairs": n_pairs,
           "chars": sum(len(d["text"]) for d in docs)}
    runs = {"datatrove": [], "ours": []}
    for _ in range(args.repeats):  # alternate the sides so a change of machine load hits both
        runs["datatrove"].append(run_ref(shard_dir, work / "datatrove", args.cores))
        runs["ours"].append(run_ours(jsonl, work / "ours", args.cores))
    for name, results in runs.items():
        res = _median_run(results)
        removed = {index[i] for i in res.pop("removed_ids")}
        res["scores"] = removal_scores(labels, removed)
        res["caught_by_true_j"] = removed_by_band(docs, generated, removed)
        res["docs_per_s"] = round(len(docs) / res["seconds"], 1)
        res["docs_per_s_with_startup"] = round(len(docs) / res["wall_s"], 1)
        out[name] = res
    out["throughput_ratio"] = ratio(out["ours"]["docs_per_s"], out["datatrove"]["docs_per_s"])
    out["throughput_ratio_with_startup"] = ratio(out["ours"]["docs_per_s_with_startup"],
                                                 out["datatrove"]["docs_per_s_with_startup"])
    out["f1_diff"] = round(out["ours"]["scores"]["f1"] - out["datatrove"]["scores"]["f1"], 4)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="4000,8000,16000", help="documents per benchmark set, comma separated")
    p.add_argument("--threshold", type=float, default=0.7, help="true Jaccard at which two documents are duplicates")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1,
                   help="runs of each side per size, alternated; medians reported")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    pool = read_docs(corpus_path())
    results = {size: run_size(pool, size, args) for size in sizes}

    rows = []
    for size, r in results.items():
        for name in ("datatrove", "ours"):
            x, s = r[name], r[name]["scores"]
            rows.append([r["docs"], name, s["precision"], s["recall"], s["f1"], round(x["seconds"], 1),
                         x["docs_per_s"], r["throughput_ratio"] if name == "ours" else 1.0,
                         round(x["wall_s"], 1), r["throughput_ratio_with_startup"] if name == "ours" else 1.0,
                         x["peak_rss_mb"], round(x.get("startup_s", 0.0), 1)])
    print(table(rows, ["docs", "side", "precision", "recall", "F1", "seconds", "docs/s", "× datatrove",
                       "with start-up s", "× datatrove with start-up", "peak RSS MB", "Spark start-up s"]))
    stage_rows = [[r["docs"], "ours", *(round(r["ours"]["stage_seconds"][k], 1) for k in
                                         ("read_exact_dedup", "signatures", "lsh_candidate_edges",
                                          "connected_components", "decide_and_write"))] for r in results.values()]
    print(table(stage_rows, ["docs", "side", "read+exact s", "signatures s", "LSH edges s", "components s",
                             "decide+write s"]))
    ref_rows = [[r["docs"], "datatrove", *(round(r["datatrove"]["stage_seconds"][k], 1) for k in
                                           ("signatures", "buckets", "cluster", "filter"))] for r in results.values()]
    print(table(ref_rows, ["docs", "side", "signatures s", "buckets s", "cluster s", "filter s"]))
    big = results[max(results)]
    print("caught by true J (largest size): ours", {k: v["caught"] for k, v in big["ours"]["caught_by_true_j"].items()},
          "datatrove", {k: v["caught"] for k, v in big["datatrove"]["caught_by_true_j"].items()})
    write_result("dedup", {"threshold": args.threshold, "cores": args.cores, "repeats": args.repeats,
                           "sizes": results})


if __name__ == "__main__":
    main()
