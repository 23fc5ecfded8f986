"""OURS: training.pretrain (single process, Horovod np=1/np=2, torch DDP np=2). REFERENCE: a plain
minimal PyTorch loop (bench/_plain_loop.py) with the same GPT, batch and threads. CPU, one run.

    .venv-jobs/bin/python -m bench.train_throughput                 # tiny GPT, 150 steps each
    .venv-jobs/bin/python -m bench.train_throughput --steps 60 --batch-size 8

Shards come from the real tokenize stage (spark-submit on ~3 MB of the real-text corpus),
made once and reused. Every run uses 1 torch thread per rank. Tokens/s is what each run
measures over its own training loop (the trainer's result file; the plain loop's timer),
so start-up, MLflow and model registration are outside it. Ratios:
* trainer / plain loop (same single process): overhead, target <= 5%;
* Horovod np=2 / np=1 and DDP np=2 / Horovod np=2: total tokens/s across ranks.
"""
import argparse
import json
import shutil
from pathlib import Path

from bench.common import (JOBS_PY, REPO, job_env, last_json_line, ratio, run_measured, table, work_dir,
                          write_result)
from bench.corpus import corpus_path, write_jsonl


def make_shards(work: Path, seq_len: int, vocab_size: int, megabytes: float = 3.0) -> Path:
    folder = work / "data" / "shards" / "v=bench"
    if (folder / "_manifest.json").exists():
        return folder
    docs, total = [], 0
    for line in open(corpus_path(), encoding="utf-8"):
        doc = json.loads(line)
        docs.append({"id": doc["id"], "text": doc["text"]})
        total += len(doc["text"])
        if total >= megabytes * 1e6:
            break
    jsonl = write_jsonl(docs, work / "input.jsonl")
    shutil.rmtree(work / "data", ignore_errors=True)
    run_measured([JOBS_PY.parent / "spark-submit", "--master", "local[2]", REPO / "bench" / "_spark_stage.py",
                  "tokenize", "--", "--root", work / "data", "--version", "bench", "--input-jsonl", jsonl,
                  "--seq-len", seq_len, "--vocab-size", vocab_size], env=job_env(2))
    return folder


def trainer_cmd(launcher: str, np_: int, shards: Path, out: Path, args) -> list:
    train = ["-m", "training.pretrain", "--shards", shards, "--model", args.model, "--max-steps", args.steps,
             "--batch-size", args.batch_size, "--threads", 1, "--eval-every", 10 * args.steps,
             "--eval-batches", 1, "--log-every", 50, "--checkpoint-every", 0,
             "--checkpoint-dir", out / "ckpt", "--run-name", f"bench-{launcher}-{np_}",
             "--experiment", "bench", "--register-name", "bench-gpt", "--promote", "never", "--result-file",
             out / "result.json", "--no-verify-shards"]
    if launcher == "horovod":
        return [JOBS_PY.parent / "horovodrun", "-np", np_, "-H", f"localhost:{np_}", "--gloo", JOBS_PY, *train]
    if launcher == "ddp":
        return [JOBS_PY.parent / "torchrun", "--standalone", "--nproc_per_node", np_, *train]
    return [JOBS_PY, *train]


def run_trainer(launcher: str, np_: int, shards: Path, work: Path, args) -> dict:
    out = work / f"{launcher}-{np_}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = job_env(np_) | {"MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db", "HOROVOD_LOG_LEVEL": "warning"}
    res = run_measured(trainer_cmd(launcher, np_, shards, out, args), env=env, cwd=REPO, timeout=1200)
    result = json.loads((out / "result.json").read_text())
    return {"tokens_per_s": result["tokens_per_s"], "steps_per_s": result["steps_per_s"],
            "world_size": result["world_size"], "backend": result["backend"], "ranks_agree": result["ranks_agree"],
            "process_seconds": round(res["seconds"], 1), "peak_rss_mb": res["peak_rss_mb"]}


def run_plain(shards: Path, args) -> dict:
    res = run_measured([JOBS_PY, REPO / "bench" / "_plain_loop.py", shards, "--steps", args.steps,
                        "--batch-size", args.batch_size, "--threads", 1, "--model", args.model], env=job_env(1))
    return last_json_line(res["stdout"]) | {"process_seconds": round(res["seconds"], 1),
                                            "peak_rss_mb": res["peak_rss_mb"], "world_size": 1}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=257, help="tokens per shard row (the model sees seq_len - 1)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--model", default="tiny")
    p.add_argument("--repeats", type=int, default=2, help="plain loop and single-process trainer runs, best kept")
    args = p.parse_args(argv)
    work = work_dir("train_throughput")
    shards = make_shards(work, args.seq_len, args.vocab_size)

    runs = {}
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike; best of each kept
        for name, fn in (("plain", lambda: run_plain(shards, args)),
                         ("trainer", lambda: run_trainer("single", 1, shards, work, args))):
            r = fn()
            if name not in runs or r["tokens_per_s"] > runs[name]["tokens_per_s"]:
                runs[name] = r
    runs["horovod_np1"] = run_trainer("horovod", 1, shards, work, args)
    runs["horovod_np2"] = run_trainer("horovod", 2, shards, work, args)
    runs["ddp_np2"] = run_trainer("ddp", 2, shards, work, args)

    plain = runs["plain"]["tokens_per_s"]
    rows = [[name, r["world_size"], round(r["tokens_per_s"]), ratio(r["tokens_per_s"], plain), r["peak_rss_mb"],
             r.get("ranks_agree", "")] for name, r in runs.items()]
    print(table(rows, ["run", "ranks", "tokens/s (all ranks)", "× plain loop", "peak RSS MB", "ranks agree"]))
    overhead = 1 - runs["trainer"]["tokens_per_s"] / plain
    ratios = {"trainer_overhead_vs_plain": round(overhead, 4),
              "horovod_np2_over_np1": ratio(runs["horovod_np2"]["tokens_per_s"], runs["horovod_np1"]["tokens_per_s"]),
              "ddp_np2_over_horovod_np2": ratio(runs["ddp_np2"]["tokens_per_s"], runs["horovod_np2"]["tokens_per_s"]),
              "horovod_np1_over_trainer": ratio(runs["horovod_np1"]["tokens_per_s"], runs["trainer"]["tokens_per_s"])}
    print(f"trainer overhead vs plain loop: {overhead:.1%} (target <= 5%); Horovod np=2/np=1: "
          f"{ratios['horovod_np2_over_np1']}x; DDP np=2 / Horovod np=2: {ratios['ddp_np2_over_horovod_np2']}x")
    write_result("train_throughput", {"steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len,
                                      "model": args.model, "threads_per_rank": 1, "runs": runs, "ratios": ratios})


if __name__ == "__main__":
    main()
