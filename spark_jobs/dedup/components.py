"""Connected components of an edge DataFrame, computed in Spark (never on the driver).

Alternating large-star and small-star (Kiveris et al. 2014, "Connected Components in
MapReduce and Beyond") turn any graph into a forest of stars, each centred on the
smallest node of its component, in O(log² n) rounds of joins and group-bys:

* large-star: every node links each *larger* neighbour to the smallest node of its
  neighbourhood (itself included);
* small-star: every node links itself and each *smaller* neighbour to the smallest of
  those.

Edges are kept as (u, v) with u > v. The graph is a star forest, and the algorithm done,
when every child has one parent and no parent is itself a child; then (u, v) reads
"u belongs to the component named v". Each round is cut from its lineage with
``localCheckpoint`` so plans stay small however many rounds run.
"""
from __future__ import annotations

MAX_ROUNDS = 64


def _oriented(edges, a: str = "a", b: str = "b"):
    from pyspark.sql import functions as F

    return (edges.select(F.greatest(a, b).alias("u"), F.least(a, b).alias("v"))
            .where(F.col("u") != F.col("v")).distinct())


def large_star(edges):
    from pyspark.sql import functions as F

    both = edges.select(F.col("u").alias("x"), F.col("v").alias("y")).unionByName(
        edges.select(F.col("v").alias("x"), F.col("u").alias("y")))
    mins = both.groupBy("x").agg(F.min("y").alias("m"))
    return (both.where(F.col("y") > F.col("x")).join(mins, "x")
            .select(F.col("y").alias("u"), F.least("x", "m").alias("v")).distinct())


def small_star(edges):
    from pyspark.sql import functions as F

    mins = edges.groupBy("u").agg(F.min("v").alias("m"))
    neighbours = edges.join(mins, "u").select(F.col("v").alias("u"), F.col("m").alias("v"))
    selves = mins.select("u", F.col("m").alias("v"))
    return neighbours.unionByName(selves).where(F.col("u") != F.col("v")).distinct()


def is_star_forest(edges) -> bool:
    """One Spark job: is there a child with two parents, or a parent that is also a child?"""
    from pyspark.sql import functions as F

    ends = edges.select(F.col("u").alias("n"), F.lit(1).alias("child"), F.lit(0).alias("parent")).unionByName(
        edges.select(F.col("v").alias("n"), F.lit(0).alias("child"), F.lit(1).alias("parent")))
    per_node = ends.groupBy("n").agg(F.sum("child").alias("parents"), F.max("parent").alias("is_parent"))
    bad = per_node.where((F.col("parents") > 1) | ((F.col("parents") > 0) & (F.col("is_parent") == 1)))
    return bad.limit(1).count() == 0


def connected_components(edges, a: str = "a", b: str = "b", max_rounds: int = MAX_ROUNDS,
                         oriented: bool = False):
    """(node, component) for every node that has an edge; component = the smallest node.

    ``edges`` holds undirected pairs in columns ``a`` and ``b`` (any comparable type;
    self-loops and repeats are fine). Returns the DataFrame and the number of rounds run
    (0 when the edges already form stars, as LSH edges to each bucket's smallest node
    often do). ``oriented=True`` promises distinct pairs with ``a > b`` already materialised
    (as :func:`spark_jobs.dedup.near.candidate_edges` gives), which saves one pass.
    """
    from pyspark.sql import functions as F

    if oriented:
        current = edges.select(F.col(a).alias("u"), F.col(b).alias("v"))
    else:
        current = _oriented(edges, a, b).localCheckpoint()
    rounds = 0
    while not is_star_forest(current):
        if rounds == max_rounds:
            raise RuntimeError(f"connected components did not converge in {max_rounds} rounds; "
                               "this is a bug (the algorithm needs O(log² n) rounds)")
        current = small_star(large_star(current)).localCheckpoint()
        rounds += 1
    children = current.select(F.col("u").alias("node"), F.col("v").alias("component"))
    roots = current.select(F.col("v").alias("node"), F.col("v").alias("component")).distinct()
    return children.unionByName(roots), rounds
