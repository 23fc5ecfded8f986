"""torch.compile in pretraining: the same losses as eager, plain checkpoints, resume across compile on/off.

The compiled runs use the ``aot_eager`` backend: dynamo captures the forward graph and AOT
autograd the backward one, as with inductor, but the graphs run eagerly, so a run costs
seconds instead of inductor's kernel compilation. One test compiles with inductor itself
on a fresh kernel cache (the tiny GPT, ~30 s here).
"""

import shutil

import pytest
import torch

STEPS, HALF = 8, 4
REGISTER = "c2m-base-compile-test"


def _args(shards_uri, ckpt, name, *extra):
    return [
        "--shards", shards_uri, "--model", "tiny", "--max-steps", str(STEPS), "--batch-size", "4",
        "--lr", "3e-3", "--warmup-steps", "2", "--eval-every", str(HALF), "--eval-batches", "1",
        "--log-every", "2", "--checkpoint-every", str(HALF), "--keep-last", "5",
        "--checkpoint-dir", str(ckpt), "--experiment", "pretrain-test", "--register-name", REGISTER,
        "--promote", "never", "--run-name", name, "--bpb-max-bytes", "2000", *extra,
    ]  # fmt: skip


def _pretrain(shards_uri, ckpt, name, *extra):
    from training import pretrain

    torch._dynamo.reset()  # each compiled run captures its graphs afresh, as a new process would
    return pretrain.main(_args(shards_uri, ckpt, name, *extra))


def _losses(mlflow_uri, run_id):
    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=mlflow_uri).get_metric_history(run_id, "train/loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def _weights(ckpt, step=STEPS):
    return torch.load(ckpt / f"step-{step:08d}.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def runs(shards_uri, mlflow_uri, tmp_path_factory):
    """An eager run and an aot_eager-compiled run of the same job, each checkpointed at steps 4 and 8."""
    tmp = tmp_path_factory.mktemp("compile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        eager = _pretrain(shards_uri, tmp / "eager", "compile-off")
        compiled = _pretrain(
            shards_uri, tmp / "compiled", "compile-on", "--compile", "--compile-backend", "aot_eager"
        )
    return {
        "tmp": tmp,
        "eager": (eager, _losses(mlflow_uri, eager["run_id"])),
        "compiled": (compiled, _losses(mlflow_uri, compiled["run_id"])),
    }


def test_compiled_training_matches_eager_losses_and_saves_plain_names(runs, mlflow_uri):
    from mlflow import MlflowClient

    (eager, eager_losses), (compiled, compiled_losses) = runs["eager"], runs["compiled"]
    assert len(eager_losses) == len(compiled_losses) == STEPS
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5, abs=1e-6)
    assert compiled_losses[-1] < compiled_losses[0]  # it trained, rather than agreeing on nothing
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], rel=1e-5)
    params = MlflowClient(tracking_uri=mlflow_uri).get_run(compiled["run_id"]).data.params
    assert params["train.compile"] == "True" and params["train.compile_backend"] == "aot_eager"

    tmp = runs["tmp"]
    for step in (HALF, STEPS):
        state = torch.load(tmp / "compiled" / f"step-{step:08d}.pt", weights_only=True)
        assert not any("_orig_mod" in k for k in state["model"])
        assert list(state["model"]) == list(_weights(tmp / "eager", step))
        assert state["config"]["train"]["compile_backend"] == "aot_eager"
    compiled_weights, eager_weights = _weights(tmp / "compiled"), _weights(tmp / "eager")
    assert all(torch.allclose(compiled_weights[k], eager_weights[k], atol=1e-5) for k in eager_weights)


def test_registered_model_of_a_compiled_run_is_the_plain_module(runs, mlflow_uri, monkeypatch):
    from training import tracking
    from training.config import ModelConfig
    from training.models.gpt import GPT

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    compiled = runs["compiled"][0]
    bundle = tracking.load_model_bundle(compiled["model_uri"])
    weights = bundle.state_dict()
    assert not any("_orig_mod" in k for k in weights)
    GPT(ModelConfig(**bundle.config["model"])).load_state_dict(weights)  # strict: every name matches


@pytest.mark.parametrize(
    "source, flags",
    [("compiled", []), ("eager", ["--compile", "--compile-backend", "aot_eager"])],
    ids=["compiled-then-eager", "eager-then-compiled"],
)
def test_resume_across_compile_on_and_off(runs, shards_uri, mlflow_uri, monkeypatch, source, flags):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    tmp = runs["tmp"]
    ckpt = tmp / f"resume-from-{source}"
    ckpt.mkdir()
    shutil.copy(tmp / source / f"step-{HALF:08d}.pt", ckpt)  # as if the job died after step 4
    resumed = _pretrain(shards_uri, ckpt, f"resume-{source}", *flags)
    origin = runs[source][0]
    assert resumed["run_id"] == origin["run_id"]  # it resumed that checkpoint's run, not a fresh start
    assert resumed["steps"] == STEPS
    eager = runs["eager"][0]
    assert resumed["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-5)
    assert resumed["val_loss"] == pytest.approx(eager["val_loss"], rel=1e-5)
    final, reference = _weights(ckpt), _weights(tmp / "eager")
    assert list(final) == list(reference)
    assert all(torch.allclose(final[k], reference[k], atol=1e-5) for k in reference)


def test_contrastive_embed_is_compiled_too():
    """The wrapper forwards ``embed`` to the eager module unless it is compiled explicitly."""
    from torch._dynamo.utils import counters

    from training.config import model_config
    from training.models import build_model
    from training.pretrain import compiled_for_training

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_model(model_config("bert_tiny_cpu", vocab_size=100, block_size=16, dropout=0.0))
    wrapper = compiled_for_training(model, "aot_eager")
    ids = torch.randint(0, 100, (4, 16))
    graphs = counters["stats"]["unique_graphs"]
    assert torch.allclose(wrapper.embed(ids), model.embed(ids), atol=1e-6)
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo captured it: not silently eager


@pytest.mark.timeout(120)
def test_inductor_compiled_training_matches_eager(runs, shards_uri, mlflow_uri, monkeypatch, tmp_path):
    """Inductor's generated kernels on a fresh cache (no kernels left by an earlier run): ~30 s here."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-cache"))
    result = _pretrain(shards_uri, tmp_path / "ckpt", "compile-inductor", "--compile")
    eager, eager_losses = runs["eager"]
    assert _losses(mlflow_uri, result["run_id"]) == pytest.approx(eager_losses, rel=1e-4, abs=1e-5)
    assert result["val_loss"] == pytest.approx(eager["val_loss"], rel=1e-4)
    assert not any("_orig_mod" in k for k in _weights(tmp_path / "ckpt"))


def test_compile_backend_is_validated_and_old_configs_default_to_inductor():
    from training.config import JobConfig, TrainConfig
    from training.pretrain import parse_args

    with pytest.raises(ValueError, match="train.compile_backend='tvm': choose one of inductor, aot_eager"):
        TrainConfig(compile_backend="tvm")
    saved = JobConfig().to_dict()
    del saved["train"]["compile_backend"]  # a checkpoint written before the field existed
    assert JobConfig.from_dict(saved).train.compile_backend == "inductor"
    args = parse_args(["--shards", "x", "--compile", "--compile-backend", "aot_eager"])
    assert args.compile and args.compile_backend == "aot_eager"
    with pytest.raises(SystemExit):
        parse_args(["--shards", "x", "--compile-backend", "tvm"])
