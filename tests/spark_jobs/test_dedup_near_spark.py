"""Near-dedup in Spark: connected components, a generated near-duplicate set, cross-version dedup."""
from __future__ import annotations

import json
import os
from itertools import combinations

import pytest

from spark_test_data import english
from test_minhash import _edit
from ops.lake.datasets import DatasetVersion
from spark_jobs.dedup.components import ONE_TASK, STAR_ROUNDS, connected_components, solver_for
from spark_jobs.dedup.minhash import jaccard
from spark_jobs.jobs import dedup
from spark_jobs.runner import read_version

pytestmark = pytest.mark.spark


def test_the_solver_rule_the_manifest_reports_is_the_one_connected_components_applies(spark):
    edges = [("b", "a"), ("c", "b")]
    df = spark.createDataFrame(edges, "a string, b string")
    assert solver_for(2, one_task_max_edges=2) == ONE_TASK
    assert connected_components(df, one_task_max_edges=2)[1] == 0  # no rounds: one task
    assert solver_for(3, one_task_max_edges=2) == solver_for(0, one_task_max_edges=0) == STAR_ROUNDS
    assert connected_components(df, one_task_max_edges=1)[1] > 0  # a chain is no star: rounds ran


@pytest.mark.parametrize("where", ["rounds", "one_task"])
def test_connected_components_on_a_hand_made_graph(spark, where):
    edges = [("a", "b"), ("c", "b"), ("e", "d"), ("d", "d"),  # chain a-b, b-c; pair d-e; a self-loop
             ("q4", "q3"), ("q3", "q2"), ("q2", "q1"), ("q1", "q0"),  # a longer chain needs more rounds
             ("s", "s")]  # only a self-loop: no component
    df = spark.createDataFrame(edges, "a string, b string")
    components, rounds = connected_components(df, one_task_max_edges=0 if where == "rounds" else 100)
    got = {r["node"]: r["component"] for r in components.collect()}
    assert got == {"a": "a", "b": "a", "c": "a", "d": "d", "e": "d", **{f"q{i}": "q0" for i in range(5)}}
    assert (rounds >= 1) if where == "rounds" else (rounds == 0)


def test_one_task_and_star_round_components_agree_on_a_random_graph(spark):
    """Union-find in one task (small graphs) must name components exactly as the star rounds do."""
    import random

    rng = random.Random(7)
    nodes = [f"{rng.getrandbits(64):016x}" for _ in range(400)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(300)]
    df = spark.createDataFrame(edges, "a string, b string")
    on_spark, rounds = connected_components(df, one_task_max_edges=0)
    one_task, none = connected_components(df, edge_count=len(edges))
    assert rounds >= 1 and none == 0
    spark_rows = sorted(tuple(r) for r in on_spark.collect())
    assert spark_rows == sorted(tuple(r) for r in one_task.collect())
    assert len({c for _, c in spark_rows}) > 10  # a real mix of components, not one blob


def test_fast_exact_normalisation_matches_the_per_character_definition():
    """normalize_for_hash drops punctuation with a numpy lookup; the hash must not change."""
    import random
    import re
    import sys
    import unicodedata

    from spark_jobs.dedup.exact import normalize_for_hash

    def by_definition(text):
        text = unicodedata.normalize("NFC", text or "").lower()
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
        return re.sub(r"\s+", " ", text).strip()

    rng = random.Random(3)
    samples = [english(1), "Hello,  World!\n“Quoted” — ¿qué? «non» 「かぎ」", "x\u2028y \ud800 e\u0301", "", None]

    def noise(n):
        return "".join(chr(rng.randrange(sys.maxunicode + 1)) if rng.random() < 0.3 else rng.choice(" a.,\t")
                       for _ in range(n))

    samples += [noise(rng.randrange(80)) for _ in range(300)]
    for text in samples:
        assert normalize_for_hash(text) == by_definition(text), repr(text)


def _write_jsonl(path, docs):
    path.write_text("".join(json.dumps({"id": i, "text": t, "lang": "en", "lang_score": 0.99}) + "\n"
                            for i, t in docs))
    return str(path)


def _dedup(root, version, path, *extra):
    return dedup.main(["--root", str(root), "--version", version, "--input-jsonl", path, *extra])


def _true_clusters(docs, threshold=0.75):
    """Components of the exact-Jaccard ≥ threshold graph (the ground truth)."""
    parent = {i: i for i, _ in docs}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for (i, a), (j, b) in combinations(docs, 2):
        if jaccard(a, b) >= threshold:
            parent[max(find(i), find(j))] = min(find(i), find(j))
    return {i: find(i) for i, _ in docs}


def _same_cluster_pairs(cluster_of):
    return {(a, b) for a, b in combinations(sorted(cluster_of), 2) if cluster_of[a] == cluster_of[b]}


def test_generated_near_duplicates(spark, tmp_path):
    docs = []
    for b in range(10):
        base = english(100 + b, sentences=25)
        docs.append((f"b{b:02d}", base))
        docs += [(f"v{b:02d}{k}", _edit(base, 0.01, seed=b * 10 + k)) for k in range(2)]
        docs.append((f"far{b:02d}", _edit(base, 0.3, seed=900 + b)))  # J ≈ 0.1: not a near duplicate
    docs += [(f"u{u:02d}", english(500 + u, sentences=25)) for u in range(6)]
    docs.append(("zcopy", docs[0][1].upper().replace(".", "!")))  # exact duplicate after normalisation
    path = _write_jsonl(tmp_path / "near.jsonl", docs)
    manifest = _dedup(tmp_path, "n1", path, "--dedup-against", "none")

    assert manifest["dropped"] == {"exact_duplicate": 1, "near_duplicate": 20}
    assert manifest["minhash"]["bands"] == 14 and manifest["minhash"]["rows"] == 8
    out = DatasetVersion(str(tmp_path), "corpus", "n1")
    rows = read_version(spark, out).collect() + spark.read.parquet(out.data_path("removed", "*")).collect()
    assert len(rows) == manifest["rows_in"] and all(r["dup_cluster"] for r in rows)
    predicted = {r["id"]: r["dup_cluster"] for r in rows if r["id"] != "zcopy"}
    truth = _true_clusters([d for d in docs if d[0] != "zcopy"])
    pred_pairs, true_pairs = _same_cluster_pairs(predicted), _same_cluster_pairs(truth)
    precision = len(pred_pairs & true_pairs) / len(pred_pairs)
    recall = len(pred_pairs & true_pairs) / len(true_pairs)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    kept = {r["id"] for r in read_version(spark, out).collect()}
    for b in range(10):  # one per cluster, the longest text; far variants and unique docs all kept
        family = [(i, t) for i, t in docs if i in (f"b{b:02d}", f"v{b:02d}0", f"v{b:02d}1")]
        winner = sorted(family, key=lambda d: (-len(d[1]), d[0]))[0][0]
        assert kept & {i for i, _ in family} == {winner}
        assert f"far{b:02d}" in kept
    assert {f"u{u:02d}" for u in range(6)} <= kept
    copy = [r for r in rows if r["id"] == "zcopy"][0]
    assert copy["dup_cluster"] == predicted["b00"]  # exact and near copies share one cluster id
    sigs = spark.read.parquet(out.data_path("signatures"))
    assert sigs.count() == manifest["rows_out"] and {r["id"] for r in sigs.collect()} == kept


def test_cross_version_dedup_uses_saved_signatures(spark, tmp_path):
    old = [(f"a{i}", english(300 + i, sentences=20)) for i in range(4)]
    v1 = _dedup(tmp_path, "v1", _write_jsonl(tmp_path / "v1.jsonl", old))
    assert v1["rows_out"] == 4 and v1["dedup_against"] == []
    v1_sigs = DatasetVersion(str(tmp_path), "corpus", "v1").data_path("signatures")
    stamps = {f: os.stat(os.path.join(v1_sigs, f)).st_mtime_ns for f in os.listdir(v1_sigs)}

    fresh = english(400, sentences=20)
    new = [("n-exact", old[0][1]), ("n-near", _edit(old[1][1], 0.01, seed=5)), ("n-fresh", fresh),
           ("n-fresh2", _edit(fresh, 0.01, seed=6)), ("n-other", english(401, sentences=20))]
    v2 = _dedup(tmp_path, "v2", _write_jsonl(tmp_path / "v2.jsonl", new))
    assert v2["dedup_against"] == [DatasetVersion(str(tmp_path), "corpus", "v1").uri]
    assert v2["dropped"] == {"exact_duplicate_earlier_version": 1, "near_duplicate_earlier_version": 1,
                             "near_duplicate": 1}
    kept = {r["id"] for r in read_version(spark, DatasetVersion(str(tmp_path), "corpus", "v2")).collect()}
    longest = min(new[2:4], key=lambda d: (-len(d[1]), d[0]))[0]  # of the fresh pair, the longest text stays
    assert kept == {"n-other", longest}
    assert {f: os.stat(os.path.join(v1_sigs, f)).st_mtime_ns for f in os.listdir(v1_sigs)} == stamps

    with pytest.raises(ValueError, match="MinHash signatures with"):  # refused before any Spark work
        _dedup(tmp_path, "v3", str(tmp_path / "v2.jsonl"), "--bands", "7", "--rows", "16")
    with pytest.raises(ValueError, match=r"corpus versions \['nope'\]"):
        _dedup(tmp_path, "v3", str(tmp_path / "v2.jsonl"), "--dedup-against", "v1,nope")
