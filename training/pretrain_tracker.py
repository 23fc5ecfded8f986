"""Rank 0's MLflow side of pretraining: one run, batched metrics, lineage, register and gate.

Imported only on rank 0 (other ranks never load mlflow). The model is registered on every
run; the ``champion`` alias moves as ``--promote`` says, by default only when the new model
beats the champion (training/registry_gate.py):

- a GPT on bits per byte over the same held-out raw text, scored by each model through
  its own tokenizer (training/bpb.py), because the weekly refresh trains a new tokenizer
  and per-token losses of different tokenizers are not comparable; xz's bits per byte on
  that text (training/baselines.py) is logged beside it (``val/baseline_bpb``,
  ``val/lift_bpb``) and named in the gate's reason and tags, without blocking;
- a BERT (MLM/contrastive: no per-byte likelihood) on val loss, comparable only with the
  same tokenizer and val rows (:func:`val_split_id`); otherwise the gate refuses.

Every version is described and tagged with its corpus version and tokenizer hash.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

from training import baselines
from training.config import JobConfig
from training.data.shards import ShardInfo

GATE_METRIC = "loss"  # BERT: registry_gate tag c2m.test.loss; lower is better
BPB_METRIC = "bpb"  # GPT: registry_gate tag c2m.test.bpb; lower is better
MODEL_DESCRIPTION = (
    "{name}: a {arch} pretrained by crawl2model (training.pretrain) on token shards of a web-crawl "
    "corpus. Consume models:/{name}@champion. The champion alias moves only when a new version beats "
    "it ({how}); the comparison is in the version tags c2m.gate.*. Each version names its corpus "
    "(c2m.corpus.uri/version/digest, c2m.shards.uri) and tokenizer (c2m.tokenizer_sha256)."
)


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
            if cfg.train.time_budget_min:
                from training import budget

                budget.log_plan(cfg)
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

    def log_steps(self, steps: list[tuple[int, float, float, float]], perf: dict[str, float]) -> None:
        """One log interval: per-step (step, rank-averaged loss, lr, grad norm), plus throughput."""
        for step, loss, lr, grad_norm in steps:
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
        t = self.tracking
        self.metrics.add(
            result["steps"],
            **{"perf/steps_per_s": result["steps_per_s"], "perf/tokens_per_s": result["tokens_per_s"]},
        )
        gpt = self.cfg.model.arch == "gpt"
        text = score = None
        if gpt:  # bits per byte on held-out raw text: the tokenizer-free number the gate compares
            from training import bpb

            text = bpb.load_eval_text(self.info, self.cfg.train.bpb_max_bytes)
            tokenizer = _tokenizer(self.info.tokenizer_path)
            score = bpb.score_docs(model, tokenizer, text.docs, self.info.eos_id, self.cfg.model.block_size)
            xz = compressor_baseline(text)
            self.metrics.add(
                result["steps"],
                **{
                    "val/bpb": score.bpb,
                    "val/tokens_per_byte": score.tokens_per_byte,
                    "val/baseline_bpb": xz.value,
                    "val/lift_bpb": score.bpb - xz.value,
                },
            )
            t.set_run_tags({**bpb_tags(text, score), "c2m.baseline": xz.name})
            result["val_bpb"] = score.bpb
            print(f"[pretrain] {baselines.describe('bpb', score.bpb, xz.value, xz.name)} on the same text",
                  flush=True)
        self.metrics.flush()
        version, model_uri = t.log_and_register_model(
            model,
            registered_name=self.cfg.register_name,
            tokenizer_path=self.info.tokenizer_path,
            model_config=self.registered_config(),
            signature=t.lm_signature(self.cfg.model.vocab_size),
            set_champion=False,
        )
        self.describe(version, result, text, score)
        if gpt:
            decision = gate_on_bpb(
                self.cfg.register_name, version, score.bpb, text, self.cfg.train.promote_margin,
                self.cfg.train.promote, device=next(model.parameters()).device, baseline=xz,
            )
        else:
            from training import registry_gate

            decision = registry_gate.gate(
                self.cfg.register_name,
                version,
                GATE_METRIC,
                result["val_loss"],
                val_split_id(self.cfg, self.info, self.world_size),
                self.cfg.train.promote_margin,
                mode=self.cfg.train.promote,
            )
        print(
            f"[pretrain] {self.cfg.register_name} v{version}: "
            f"{'champion' if decision.promoted else 'not promoted'} ({decision.reason})",
            flush=True,
        )
        self.describe_run(version, result, decision, score)
        t.end_run()
        return {
            "run_id": self.run_id,
            "model_uri": model_uri,
            "model_version": version,
            "promoted": decision.promoted,
            "gate": decision.reason,
            **(
                {
                    "val_bpb": score.bpb,
                    "champion_bpb": decision.champion_value,
                    "baseline": xz.name,
                    "baseline_bpb": xz.value,
                    "lift_bpb": score.bpb - xz.value,
                }
                if gpt
                else {}
            ),
        }

    def registered_config(self) -> dict:
        """``model_config.json``: how to rebuild the module and which tokenizer goes with it."""
        arch = self.cfg.model.arch
        return {
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

    def describe(self, version: int, result: dict, text, score) -> None:
        """The registered model's description, and the version's description and lineage tags."""
        name, arch = self.cfg.register_name, self.cfg.model.arch
        how = "bits per byte on the same held-out raw text" if text else "val loss on the same val rows"
        tags = self.tracking.corpus_tags(self.info.uri, self.info.manifest)
        tags["c2m.run_id"] = self.run_id
        if text:
            tags.update(bpb_tags(text, score))
        measured = f"val bpb {score.bpb:.4f}" if score else f"val loss {result['val_loss']:.4f}"
        self.tracking.describe_registration(
            name,
            version,
            model_description=MODEL_DESCRIPTION.format(name=name, arch=arch.upper(), how=how),
            version_description=(
                f"{self.cfg.objective.name} on corpus {tags['c2m.corpus.uri']} "
                f"(version {tags['c2m.corpus.version']}, shards {self.info.uri}), {self.cfg.model_size} "
                f"model, {result['steps']} steps, {measured}; MLflow run {self.run_id}"
            ),
            tags=tags,
        )

    def describe_run(self, version: int, result: dict, decision, score) -> None:
        """The run page's description: objective and model, the shards version, losses and the gate."""
        corpus = self.tracking.corpus_tags(self.info.uri, self.info.manifest)
        bpb = f", val bpb {score.bpb:.4f}" if score else ""
        self.tracking.describe_run(
            f"Pretraining ({self.cfg.objective.name} objective) of a {self.cfg.model_size} "
            f"{self.cfg.model.arch.upper()} model, {result['steps']} steps on {self.world_size} rank(s)",
            f"shards {self.info.uri} (corpus {corpus['c2m.corpus.uri']}, version "
            f"{corpus['c2m.corpus.version']}, tokenizer sha256 {corpus['c2m.tokenizer_sha256'][:12]})",
            f"train loss {result['train_loss']:.4f}, val loss {result['val_loss']:.4f}{bpb}; "
            + self.tracking.registration_words(self.cfg.register_name, version, decision.promoted,
                                               decision.reason),
        )

    def fail(self) -> None:
        self.metrics.flush()
        self.tracking.end_run(status="FAILED")


def perplexity(loss: float) -> float:
    """exp(loss), capped so a diverging early loss logs a large number instead of inf."""
    return math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("inf")


def _tokenizer(path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def bpb_tags(text, score) -> dict[str, str]:
    """What a bits-per-byte number was measured on (run and version tags)."""
    return {
        "c2m.bpb.text_digest": text.digest,
        "c2m.bpb.text_source": text.source,
        "c2m.bpb.text_origin": text.origin,
        "c2m.bpb.bytes": str(score.n_bytes),
        "c2m.bpb.docs": str(score.docs),
        "c2m.bpb.lossless_docs": str(score.lossless_docs),
    }


def compressor_baseline(text):
    """xz's bits per byte on the same held-out text: recorded and named by the gate, not blocking.

    A base model is a means to transfer, judged downstream by its fine-tuned tasks (whose
    gates do block below their baselines); a small model trained for minutes can lose to
    a compressor that reads the text itself, and blocking it would leave fine-tuning
    without a base.
    """
    from training import registry_gate

    return registry_gate.Baseline(baselines.XZ, baselines.compressor_bpb(text.docs), blocks=False)


def gate_on_bpb(
    name: str, version: int, value: float, text, margin: float, mode: str, device=None, client=None,
    baseline=None,
):
    """Promote ``version`` only if its bpb beats the champion's on ``text`` by more than ``margin``.

    The champion's number is read from its tags when it was measured on this very text
    (same digest), otherwise its model and tokenizer are loaded from the registry and it is
    scored here, and the number is recorded on the champion for the next comparison.
    """
    from training import bpb, registry_gate

    def rescore(model_uri: str) -> float:
        return bpb.score_registered(model_uri, text, device).bpb

    return registry_gate.gate(
        name, version, BPB_METRIC, value, text.digest, margin, mode, rescore, client, baseline=baseline
    )
