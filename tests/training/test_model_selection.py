"""Model selection in the fine-tuning loop: the primary metric or the validation loss picks the epoch.

A fake task scripts the validation scores per epoch, so the two criteria disagree on
purpose (BLEU peaks at epoch 1, loss bottoms out at epoch 3), while the model and the
training steps are real: the weights left in the model must be the ones the chosen
epoch was scored on.
"""

import pytest
import torch

# epoch -> validation scores: BLEU is best at epoch 1, loss (and perplexity) at epoch 3.
SCRIPT = [
    {"bleu": 30.0, "perplexity": 110.0, "loss": 4.70},
    {"bleu": 20.0, "perplexity": 95.0, "loss": 4.55},
    {"bleu": 25.0, "perplexity": 85.8, "loss": 4.45},
    {"bleu": 10.0, "perplexity": 90.0, "loss": 4.50},
]


class ScriptedTask:
    """Trains a real tiny GPT on a fixed batch; ``evaluate`` returns the next scripted scores.

    It also snapshots the weights it was asked to score, so a test can check which epoch's
    weights the loop kept.
    """

    kind = "generation"

    def __init__(self, script, primary_metric="bleu", vocab=64):
        self.script, self.primary_metric, self.snapshots = list(script), primary_metric, []
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (64, 9), generator=g)

    def size(self, split):
        return len(self.ids)

    def loss(self, model, indices, split="train"):
        x = self.ids[list(indices)]
        logits = model(x[:, :-1])
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:])

    def evaluate(self, model, split, dist=None):
        self.snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return dict(self.script[len(self.snapshots) - 1])


def tiny_model():
    from training.config import model_config
    from training.models.gpt import GPT
    from training.tasks.generation import GenerationLM

    torch.manual_seed(0)
    return GenerationLM(GPT(model_config("tiny", vocab_size=64, block_size=16, dropout=0.0)))


def _fit(select_on, task=None, **cfg_overrides):
    from training import distributed
    from training.tasks.config import TaskConfig
    from training.tasks.loop import fit

    task = task or ScriptedTask(SCRIPT)
    cfg = TaskConfig(task="generation", epochs=len(task.script), batch_size=16, select_on=select_on)
    for key, value in cfg_overrides.items():
        setattr(cfg, key, value)
    model = tiny_model()
    result = fit(cfg, task, model, distributed.Distributed())
    return result, model, task


def _same_weights(model, snapshot):
    return all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())


def test_the_two_criteria_pick_different_epochs_and_keep_that_epochs_weights():
    by_metric, m_model, m_task = _fit("metric")
    by_loss, l_model, l_task = _fit("loss")
    assert (by_metric.best_epoch, by_metric.selected_on) == (1, "bleu")
    assert (by_loss.best_epoch, by_loss.selected_on) == (3, "loss")
    assert by_loss.best_val == SCRIPT[2] and by_metric.best_val == SCRIPT[0]
    assert len(by_loss.history) == len(by_metric.history) == 4  # no early stop asked for
    # The weights left in the model are the chosen epoch's, not the last epoch's.
    assert _same_weights(m_model, m_task.snapshots[0]) and not _same_weights(m_model, m_task.snapshots[-1])
    assert _same_weights(l_model, l_task.snapshots[2]) and not _same_weights(l_model, l_task.snapshots[0])


def test_a_lower_is_better_primary_metric_is_minimised_and_patience_follows_the_criterion(tmp_path):
    result, _, _ = _fit("metric", ScriptedTask(SCRIPT, primary_metric="perplexity"))
    assert (result.best_epoch, result.selected_on) == (3, "perplexity")
    # On BLEU, epochs 2 and 3 do not improve on epoch 1: patience 2 stops after epoch 3.
    stopped, _, _ = _fit("metric", patience=2)
    assert stopped.stopped_early and len(stopped.history) == 3 and stopped.best_epoch == 1
    # On loss, epoch 4 is the first without improvement: patience 2 lets all four run.
    kept, _, _ = _fit("loss", patience=2, checkpoint_dir=str(tmp_path))
    assert not kept.stopped_early and kept.best_epoch == 3
    saved = torch.load(tmp_path / "best.pt", weights_only=False)
    assert saved["epoch"] == 3 and saved["selected_on"] == "loss"


def test_defaults_flags_and_errors():
    from training import distributed, finetune
    from training.tasks.config import TaskConfig
    from training.tasks.loop import fit

    assert TaskConfig(task="generation").select_on == "loss"
    assert TaskConfig(task="sentiment").select_on == "metric"
    assert TaskConfig(task="generation", select_on="metric").select_on == "metric"
    assert TaskConfig.from_dict(TaskConfig(task="generation").to_dict()).select_on == "loss"
    with pytest.raises(ValueError, match="choose one of metric, loss"):
        TaskConfig(task="generation", select_on="bleu")
    with pytest.raises(ValueError, match="only generation reports a validation loss"):
        TaskConfig(task="sentiment", select_on="loss")
    parse = finetune.parse_args
    assert finetune.build_config(parse(["--task", "generation"])).select_on == "loss"
    chosen = finetune.build_config(parse(["--task", "generation", "--select-on", "metric"]))
    assert chosen.select_on == "metric"
    assert finetune.build_config(parse(["--task", "sentiment"])).select_on == "metric"
    with pytest.raises(SystemExit):
        parse(["--select-on", "bleu"])

    class NoLoss(ScriptedTask):
        kind = "classification"

    cfg = TaskConfig(task="generation", epochs=1, batch_size=16)  # a task object without "loss"
    task = NoLoss([{"accuracy": 0.5}], primary_metric="accuracy")
    with pytest.raises(ValueError, match="--select-on metric"):
        fit(cfg, task, tiny_model(), distributed.Distributed())
