"""Connected components of an edge DataFrame, computed by Spark tasks (never on the driver).

A small graph (at most ``one_task_max_edges`` edges, default one million: a few hundred
MB in one Python worker) is shuffled into one partition and solved by union-find inside
that single task, in about a second. The star rounds below need about ten Spark jobs per
round (each shuffle is a job under adaptive execution) and several rounds, which on a
small graph is tens of seconds of scheduling for a few thousand rows. Both give the same
answer, and neither ever brings the edges to the driver, so the driver's memory does not
bound the corpus; larger graphs take the rounds, which scale across executors.

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
ONE_TASK_MAX_EDGES = 1_000_000


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


ONE_TASK, STAR_ROUNDS = "one_task", "star_rounds"


def solver_for(edge_count: int, one_task_max_edges: int = ONE_TASK_MAX_EDGES) -> str:
    """Which way :func:`connected_components` solves ``edge_count`` edges (the manifest records it)."""
    return ONE_TASK if 0 < one_task_max_edges and edge_count <= one_task_max_edges else STAR_ROUNDS


def connected_components(edges, a: str = "a", b: str = "b", max_rounds: int = MAX_ROUNDS,
                         oriented: bool = False, edge_count: int | None = None,
                         one_task_max_edges: int = ONE_TASK_MAX_EDGES):
    """(node, component) for every node that has an edge; component = the smallest node.

    ``edges`` holds undirected pairs in columns ``a`` and ``b`` (any comparable type;
    self-loops and repeats are fine). Returns the DataFrame and the number of Spark rounds
    run (0 when solved in one task, or when the edges already form stars, as LSH edges
    to each bucket's smallest node often do). ``edge_count`` (rows of ``edges``, if the
    caller counted them) saves a count; ``one_task_max_edges=0`` always runs the rounds.
    ``oriented=True`` promises distinct pairs with ``a > b`` already materialised (as
    :func:`spark_jobs.dedup.near.candidate_edges` gives), which saves one pass.
    """
    from pyspark.sql import functions as F

    if one_task_max_edges > 0:
        count = edges.count() if edge_count is None else edge_count
        if solver_for(count, one_task_max_edges) == ONE_TASK:
            return components_in_one_task(edges, a, b), 0
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


def components_in_one_task(edges, a: str = "a", b: str = "b"):
    """The same (node, component) DataFrame by union-find in a single Spark task.

    The edges are shuffled into one partition (an executor's memory, not the driver's).
    Nodes are numbered in sorted order, and a union always hangs the larger root under
    the smaller, so every root is its component's smallest node, as in the star rounds.
    Self-loops and rows with a null end are skipped there too."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    kind = edges.schema[a].dataType
    schema = StructType([StructField("node", kind, False), StructField("component", kind, False)])
    pairs = edges.select(F.col(a).alias("a"), F.col(b).alias("b")).dropna().where(F.col("a") != F.col("b"))
    return pairs.repartition(1).mapInPandas(_union_find, schema)


def _union_find(batches):
    """mapInPandas body: all (a, b) edges of the graph in -> one (node, component) frame out."""
    import pandas as pd

    frames = list(batches)
    if not frames:
        return
    pdf = pd.concat(frames, ignore_index=True)
    codes, nodes = pd.factorize(pd.concat([pdf["a"], pdf["b"]], ignore_index=True), sort=True)
    parent = list(range(len(nodes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    half = len(pdf)
    for x, y in zip(codes[:half].tolist(), codes[half:].tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    roots = [find(x) for x in range(len(nodes))]
    yield pd.DataFrame({"node": nodes, "component": nodes[roots]})
