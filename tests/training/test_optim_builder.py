"""The optimiser builder pretraining and fine-tuning share: the named optimiser, decay groups, layer decay."""

import pytest
import torch

from training.config import OptimConfig, model_config
from training.models import build_model
from training.models.gpt import GPT
from training.models.heads import SequenceClassifier
from training.optim import Lamb, build_optimizer, layer_depths, param_groups, set_lr


def _gpt():
    return GPT(model_config("tiny", vocab_size=50, block_size=8))


@pytest.mark.parametrize("name, kind", [("adamw", torch.optim.AdamW), ("lamb", Lamb)])
def test_the_named_optimiser_is_built(name, kind):
    opt = build_optimizer(_gpt(), OptimConfig(name=name, lr=2e-3, betas=(0.8, 0.9), eps=1e-7))
    assert type(opt) is kind
    assert all(g["lr"] == 2e-3 and g["betas"] == (0.8, 0.9) and g["eps"] == 1e-7 for g in opt.param_groups)


def test_matrices_decay_and_norms_biases_do_not():
    model = _gpt()
    decay, no_decay = build_optimizer(model, OptimConfig(weight_decay=0.1)).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert undecayed >= {"ln_f.weight", "ln_f.bias", "blocks.0.attn.qkv.bias"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))  # tied: once


def test_layer_decay_scales_groups_by_depth_and_set_lr_applies_it():
    model = SequenceClassifier(_gpt(), 2, pad_id=0)
    depths = layer_depths(model)
    assert depths["head.weight"] == 0 and depths["backbone.blocks.1.ln_1.weight"] == 1
    assert depths["backbone.blocks.0.attn.qkv.weight"] == 2 and depths["backbone.tok_emb.weight"] == 3
    opt = build_optimizer(model, OptimConfig(name="lamb", weight_decay=0.1), layer_lr_decay=0.5)
    set_lr(opt, 0.01)
    lrs = {(g["depth"], g["weight_decay"]): g["lr"] for g in opt.param_groups}
    assert lrs[(0, 0.1)] == 0.01 and lrs[(1, 0.0)] == 0.005 and lrs[(3, 0.1)] == 0.00125
    # layer decay 1 (the default) is two groups at one lr, the layout pretraining checkpoints hold
    assert len(build_optimizer(model, OptimConfig()).param_groups) == 2


def test_bert_layers_and_embedding_norm_get_depths():
    depths = layer_depths(build_model(model_config("bert_tiny_cpu", vocab_size=50, block_size=8)))
    assert depths["layers.0.fc.weight"] == 2 and depths["layers.1.fc.weight"] == 1
    assert depths["emb_ln.weight"] == depths["tok_emb.weight"] == 3 and depths["mlm_dense.weight"] == 0


def test_frozen_parameters_are_left_out_and_all_frozen_fails():
    model = _gpt()
    model.tok_emb.weight.requires_grad_(False)
    kept = [p for g in param_groups(model, 0.1) for p in g["params"]]
    assert all(p is not model.tok_emb.weight for p in kept)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="every parameter is frozen"):
        build_optimizer(model, OptimConfig())
    with pytest.raises(ValueError, match="layer_lr_decay=0"):
        param_groups(_gpt(), 0.1, layer_lr_decay=0)


def test_finetuning_honours_the_optimizer_flag():
    from training import finetune

    cfg = finetune.build_config(finetune.parse_args(["--task", "sentiment", "--optimizer", "lamb"]))
    assert cfg.optim.name == "lamb"
    assert finetune.build_config(finetune.parse_args(["--task", "sentiment"])).optim.name == "adamw"
