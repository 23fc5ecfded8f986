"""The demo summary puts each model's number beside its cheap baseline's, from the jobs' result files."""

from types import SimpleNamespace

from ops.stack.demo_summary import DemoResult, summary


def test_summary_prints_baselines_and_lifts_beside_the_models():
    pretrain = {"train_loss": 3.2, "val_loss": 3.4, "steps": 300, "model_uri": "models:/c2m-base/2",
                "val_bpb": 2.61, "baseline": "xz-9", "baseline_bpb": 2.35, "lift_bpb": 0.26,
                "mlflow_run_url": "http://127.0.0.1:5000/#/runs/p"}
    finetune = {"accuracy": 0.585, "f1": 0.58, "model_version": 3, "metric": "accuracy",
                "baseline": "TF-IDF+LR", "baseline_accuracy": 0.685, "lift_accuracy": -0.1,
                "promoted": False, "gate": "accuracy 0.5850 < TF-IDF+LR baseline 0.6850: ...",
                "mlflow_run_url": "http://127.0.0.1:5000/#/runs/f"}
    result = DemoResult(ok=True, outputs={"pretrain": pretrain, "finetune": finetune})
    s = SimpleNamespace(data_root="/tmp/d", s3_mode=False, airflow_url="http://a", mlflow_uri="http://m")
    lines = [line.strip() for line in summary(result, s).splitlines()]
    at = next(i for i, line in enumerate(lines) if line.startswith("pretrain "))
    assert lines[at + 1] == "val bits/byte 2.6100  xz-9 baseline 2.3500  lift 0.2600 (lower is better)"
    assert lines[at + 2].startswith("finetune        accuracy 0.5850")
    assert lines[at + 3].startswith("TF-IDF+LR baseline accuracy 0.6850  lift -0.1000  (not promoted: ")


def test_summary_shows_each_part_of_a_classifier_with_an_ngram_bag():
    finetune = {"accuracy": 0.75, "metric": "accuracy", "baseline": "TF-IDF+LR", "baseline_accuracy": 0.72,
                "lift_accuracy": 0.03, "transformer_only_accuracy": 0.61, "ngrams_only_accuracy": 0.74,
                "ngram_mix": 0.8}
    s = SimpleNamespace(data_root="/tmp/d", s3_mode=False, airflow_url="http://a", mlflow_uri="http://m")
    result = DemoResult(ok=True, outputs={"finetune": finetune})
    lines = [line.strip() for line in summary(result, s).splitlines()]
    at = next(i for i, line in enumerate(lines) if line.startswith("TF-IDF+LR baseline"))
    assert lines[at + 1] == ("parts alone: transformer 0.6100  n-gram bag 0.7400  "
                             "(bag weight 0.8, picked on val)")
    del finetune["transformer_only_accuracy"], finetune["ngrams_only_accuracy"]
    assert not any("parts alone" in line for line in summary(result, s).splitlines())


def test_summary_gives_a_bert_its_gate_instead_of_bits_per_byte():
    pretrain = {"train_loss": 6.1, "val_loss": 6.4, "steps": 400, "model_uri": "models:/c2m-bert/1",
                "promoted": True, "gate": "no champion yet"}
    result = DemoResult(ok=True, outputs={"pretrain": pretrain})
    s = SimpleNamespace(data_root="/tmp/d", s3_mode=False, airflow_url="http://a", mlflow_uri="http://m")
    lines = [line.strip() for line in summary(result, s).splitlines()]
    at = next(i for i, line in enumerate(lines) if line.startswith("pretrain "))
    assert "model models:/c2m-bert/1" in lines[at]
    assert lines[at + 1] == "masked-LM model: gated on val loss (champion: no champion yet)"


def test_summary_links_the_finetune_report_in_the_mlflow_ui():
    finetune = {"accuracy": 0.7, "metric": "accuracy", "run_id": "f1", "report": "report/index.html",
                "mlflow_run_url": "http://127.0.0.1:5000/#/experiments/3/runs/f1"}
    result = DemoResult(ok=True, outputs={"finetune": finetune})
    s = SimpleNamespace(data_root="/tmp/d", s3_mode=False, airflow_url="http://a", mlflow_uri="http://m")
    lines = [line.strip() for line in summary(result, s).splitlines()]
    page = "http://127.0.0.1:5000/#/experiments/3/runs/f1/artifacts/report/index.html"
    assert f"report          {page}" in lines
    del finetune["report"]  # a run without a report (e.g. its drawing failed): no line
    assert not any(line.strip().startswith("report ") for line in summary(result, s).splitlines())


def test_demo_profile_crawls_both_sites_side_by_side_and_finetunes_the_bert(monkeypatch):
    """The demo's conf plans one crawl shard per site (150 pages each), pretrains with the masked-LM
    objective (registered as c2m-bert) and finetunes from that model."""
    from ops.dagkit.fanout import crawl_shards
    from ops.dagkit.flags import register_name_for
    from ops.launch.settings import get_settings
    from ops.stack.demo_profiles import PROFILES

    monkeypatch.setenv("C2M_SITE_PORT", "28100")
    monkeypatch.setenv("C2M_REVIEWS_PORT", "28101")
    demo = PROFILES["demo"]
    conf = demo.refresh_conf(get_settings())
    assert conf["seeds"] == ["http://127.0.0.1:28100/", "http://127.0.0.1:28101/"]
    shards = crawl_shards(conf, "v1")
    assert [(s["seeds"], s["allow_domains"], s["max_pages"]) for s in shards] == [
        (["http://127.0.0.1:28100/"], ["127.0.0.1:28100"], 150),
        (["http://127.0.0.1:28101/"], ["127.0.0.1:28101"], 150)]
    from ops.dagkit.dag_params import data_refresh_params

    overridable = data_refresh_params(get_settings())["pretrain"]["properties"]
    assert set(conf["pretrain"]) <= set(overridable)  # else Airflow refuses the trigger (HTTP 400)
    assert "mlm" in overridable["objective"]["enum"]
    name = register_name_for(conf["pretrain"]["objective"])
    assert name == "c2m-bert" and demo.finetune["base_model"] == f"models:/{name}@champion"
    from ops.dagkit.dag_params import finetune_params

    assert set(demo.finetune) <= set(finetune_params(get_settings()))  # each a Param of the finetune DAG
    assert PROFILES["tiny"].refresh_conf(get_settings()) == PROFILES["tiny"].data  # the docs site only
