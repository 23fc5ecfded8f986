"""Rank 0's MLflow side of pretraining: one run, batched metrics, lineage, register and gate.

Imported only on rank 0 (other ranks never load mlflow). The model is registered on every
run; the ``champion`` alias moves only when the new val loss beats the champion's on the
same validation data and objective (training/registry_gate.py), or as ``--promote`` says.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

from training.config import JobConfig
from training.data.shards import ShardInfo

GATE_METRIC = "loss"  # registry_gate tag c2m.test.loss; lower is better


def val_split_id(cfg: JobConfig, info: ShardInfo, world_size: int) -> str:
    """What makes two val losses comparable: objective, architecture, tokenizer and the val rows scored."""
    from training import tracking

    val = info.splits.get("val", {})
    return tracking.digest_json(
        {
            "objective": asdict(cfg.objective),
            "arch": cfg.model.arch,
            "tokenizer": info.manifest.get("tokenizer_sha256"),
            "val": {
                "files": val.get("files"),
                "sha256": val.get("sha256"),
                "sequences": val.get("sequences"),
            },
            "seq_len": info.seq_len,
            "eval_rows": cfg.train.eval_batches * cfg.train.batch_size * world_size,
        }
    )[:32]


class PretrainTracker:
    def __init__(self, cfg: JobConfig, info: ShardInfo, run_id: str | None, world_size: int = 1):
        from training import tracking

        self.tracking, self.cfg, self.info, self.world_size = tracking, cfg, info, world_size
        tags = {
            "c2m.job": "pretrain",
            "c2m.shards": info.uri,
            "c2m.objective": cfg.objective.name,
            "c2m.tokenizer_sha256": str(info.manifest.get("tokenizer_sha256", "")),
        }
        self.run_id = tracking.start_run(cfg.experiment, cfg.run_name, run_id=run_id, tags=tags)
        if run_id is None:  # params are logged once per run; a resumed run already has them
            tracking.log_config({**cfg.to_dict(), "world_size": world_size})
            tracking.log_dataset(
                info.uri,
                name=f"shards-{Path(info.uri).name}",
                digest=tracking.digest_json(info.manifest),
                tags={
                    "tokenizer_sha256": str(info.manifest.get("tokenizer_sha256", "")),
                    "tokenizer_type": info.tokenizer_type,
                },
            )
        self.metrics = tracking.MetricBuffer(self.run_id)
        print(
            f"[pretrain] MLflow run {self.run_id} in {cfg.experiment!r} at {tracking.tracking_uri()}",
            flush=True,
        )

    def log_steps(
        self, steps: list[tuple[int, float, float, float]], losses: list[float], perf: dict[str, float]
    ) -> None:
        """One log interval: per-step rank-averaged loss, lr and grad norm, plus throughput."""
        for (step, _, lr, grad_norm), loss in zip(steps, losses):
            self.metrics.add(step, **{"train/loss": loss, "train/lr": lr, "train/grad_norm": grad_norm})
        self.metrics.add(steps[-1][0], **perf)

    def log_eval(
        self, step: int, train_loss: float, val_loss: float, lr: float, extra: dict[str, float]
    ) -> None:
        values = {"val/loss": val_loss, **extra}
        if self.cfg.objective.name != "contrastive":
            values["val/perplexity"] = perplexity(val_loss)
        self.metrics.add(step, **values)
        self.metrics.flush()
        print(f"[pretrain] step {step}: train {train_loss:.4f} val {val_loss:.4f} lr {lr:.2e}", flush=True)

    def finish(self, model, result: dict) -> dict:
        from training import registry_gate

        t = self.tracking
        self.metrics.add(
            result["steps"],
            **{"perf/steps_per_s": result["steps_per_s"], "perf/tokens_per_s": result["tokens_per_s"]},
        )
        self.metrics.flush()
        arch = self.cfg.model.arch
        model_config = {
            "kind": "gpt-lm" if arch == "gpt" else "bert-mlm",
            "model": self.cfg.to_dict()["model"],
            "objective": self.cfg.objective.name,
            "eos_id": self.info.eos_id,
            "pad_id": self.info.pad_id,
            "special_tokens": self.info.special_tokens,
            "sentinel_ids": list(self.info.sentinel_ids),
            "tokenizer_type": self.info.tokenizer_type,
            "tokenizer_sha256": self.info.manifest.get("tokenizer_sha256"),
            "seq_len": self.info.seq_len,
            "shards": self.info.uri,
        }
        version, model_uri = t.log_and_register_model(
            model,
            registered_name=self.cfg.register_name,
            tokenizer_path=self.info.tokenizer_path,
            model_config=model_config,
            signature=t.lm_signature(self.cfg.model.vocab_size),
            set_champion=False,
        )
        decision = registry_gate.gate(
            self.cfg.register_name,
            version,
            GATE_METRIC,
            result["val_loss"],
            val_split_id(self.cfg, self.info, self.world_size),
            mode=self.cfg.train.promote,
        )
        print(
            f"[pretrain] {self.cfg.register_name} v{version}: "
            f"{'champion' if decision.promoted else 'not promoted'} ({decision.reason})",
            flush=True,
        )
        t.end_run()
        return {
            "run_id": self.run_id,
            "model_uri": model_uri,
            "model_version": version,
            "promoted": decision.promoted,
            "gate": decision.reason,
        }

    def fail(self) -> None:
        self.metrics.flush()
        self.tracking.end_run(status="FAILED")


def perplexity(loss: float) -> float:
    """exp(loss), capped so a diverging early loss logs a large number instead of inf."""
    return math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("inf")
