"""One declaration per setting: flags, Params and the flags a DAG passes agree with it."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest
from hypothesis import given, strategies as st

from ops.lake.jobconfig import Part, add_arguments, from_args, param_specs, setting, settings, to_flags


@dataclass
class Example:
    langs: list[str] = setting(["en"], "languages to keep", title="Languages", item_pattern="^[a-z]{2}$")
    min_score: float = setting(0.5, "least score", minimum=0.0, maximum=1.0)
    pages: int = setting(200, "most pages", minimum=1)
    profile: str = setting("docs", "threshold profile", choices=("docs", "paper"))
    near: bool = setting(True, "near-dedup")
    verbose: bool = setting(False, "say more")
    threshold: float | None = setting(None, "similarity; empty = bands x rows", minimum=0.5, maximum=0.99)
    overrides: dict = setting({}, "JSON overrides")
    redact: bool = setting(True, "redact PII", flag="--no-pii-redaction")
    cli_only: str = setting("x", "not on the form", param=False)


def parse(argv: list[str]) -> Example:
    return from_args(Example, add_arguments(argparse.ArgumentParser(), Example).parse_args(argv))


def test_no_flags_give_the_declared_defaults():
    assert parse([]) == Example()


def test_flags_are_derived_from_names_types_and_defaults():
    cfg = parse(["--langs", "en,de", "--min-score", "0.7", "--pages", "5", "--profile", "paper",
                 "--no-near", "--verbose", "--threshold", "0.8", "--overrides", '{"a": {"b": 1}}',
                 "--no-pii-redaction"])
    assert cfg == Example(langs=["en", "de"], min_score=0.7, pages=5, profile="paper", near=False,
                          verbose=True, threshold=0.8, overrides={"a": {"b": 1}}, redact=False)


@pytest.mark.parametrize("argv", [["--min-score", "1.5"], ["--pages", "0"], ["--profile", "other"],
                                  ["--pages", "many"], ["--overrides", "[1]"], ["--overrides", "{"]])
def test_values_outside_the_declaration_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        parse(argv)
    assert "error" in capsys.readouterr().err


def test_param_specs_carry_the_same_defaults_bounds_and_help():
    specs = param_specs(Example, section="Clean")
    assert "cli_only" not in specs
    for s in settings(Example):
        if s.meta["param"]:
            assert specs[s.name]["default"] == s.default
            assert specs[s.name]["description"] == s.meta["help"]
            assert specs[s.name]["section"] == "Clean"
    assert {"type": "number", "minimum": 0.0, "maximum": 1.0}.items() <= specs["min_score"].items()
    assert specs["threshold"]["type"] == ["null", "number"]
    assert specs["profile"]["enum"] == ["docs", "paper"]
    assert specs["langs"]["items"] == {"type": "string", "pattern": "^[a-z]{2}$"}
    assert specs["langs"]["title"] == "Languages" and specs["pages"]["title"] == "Pages"


def test_a_dag_default_can_replace_the_job_default_on_the_form_only():
    specs = param_specs(Example, only=("pages",), defaults={"pages": 7})
    assert list(specs) == ["pages"] and specs["pages"]["default"] == 7


def test_flags_from_param_values_leave_out_defaults_and_unknown_names():
    assert to_flags(Example, {"pages": 200, "near": True, "threshold": None, "other_stage": 1}) == []
    assert to_flags(Example, {"near": False, "verbose": True, "redact": False}) == [
        "--no-near", "--verbose", "--no-pii-redaction"]


@given(langs=st.lists(st.from_regex(r"[a-z]{2}", fullmatch=True), min_size=1, max_size=4),
       min_score=st.floats(0.0, 1.0), pages=st.integers(1, 10**6), profile=st.sampled_from(["docs", "paper"]),
       near=st.booleans(), verbose=st.booleans(), redact=st.booleans(),
       threshold=st.one_of(st.none(), st.floats(0.5, 0.99)),
       overrides=st.dictionaries(st.text(min_size=1, max_size=5), st.dictionaries(
           st.text(max_size=5), st.integers()), max_size=3))
def test_param_values_round_trip_through_flags(**values):
    assert parse(to_flags(Example, values)) == Example(**values)


def test_an_undeclarable_type_says_which_field_and_what_to_use():
    @dataclass
    class Bad:
        when: tuple = setting((1,), "a tuple")

    with pytest.raises(TypeError, match=r"Bad\.when.*declare it with one of those"):
        settings(Bad)


@dataclass
class Optim:
    name: str = setting("adamw", "optimizer", flag="--optimizer", choices=("adamw", "lamb"),
                        param="optimizer")
    lr: float = setting(1e-3, "learning rate", exclusive_minimum=0, form_maximum=1)
    eps: float = 1e-8  # not a setting: no flag, no Param


@dataclass
class Job:
    data: str = setting("", "input folder", required=True, pattern="^/")
    note: str = setting("", "free text")
    trials: int = setting(8, "trials", flag="--trials", aliases=("--n-trials",), minimum=0,
                          exclusive_minimum=0)
    name: str = setting("job", "run name")


GENTLE = Part(Optim, only=("lr",), defaults={"lr": 3e-4})


def test_a_job_spans_classes_and_a_param_name_can_differ_from_the_field():
    parser = add_arguments(argparse.ArgumentParser(), (Job, Optim))
    ns = parser.parse_args(["--data", "/d", "--optimizer", "lamb", "--n-trials", "0"])
    assert (ns.optimizer, ns.name, ns.trials, ns.data) == ("lamb", "job", 0, "/d")  # dest: the Param name
    assert from_args(Optim, ns) == Optim(name="lamb")
    specs = param_specs((Job, Optim))
    assert specs["optimizer"]["enum"] == ["adamw", "lamb"] and "eps" not in specs
    assert specs["lr"]["exclusiveMinimum"] == 0 and specs["trials"]["exclusiveMinimum"] == 0
    assert specs["lr"]["maximum"] == 1  # the form's cap only:
    assert parser.parse_args(["--data", "/d", "--lr", "5"]).lr == 5
    assert specs["data"]["pattern"] == "^/"
    assert specs["data"]["type"] == "string"  # required: the DAG gives it
    assert specs["note"]["type"] == ["null", "string"] and specs["name"]["type"] == "string"  # cleared: null
    assert to_flags((Job, Optim), {"optimizer": "lamb", "name": "job", "data": ""}) == [
        "--data", "", "--optimizer", "lamb"]  # a required setting is always passed


def test_a_required_setting_must_be_given():
    with pytest.raises(SystemExit):
        add_arguments(argparse.ArgumentParser(), Job).parse_args([])


def test_a_part_shows_some_fields_with_the_jobs_own_defaults():
    parser = add_arguments(argparse.ArgumentParser(), GENTLE)
    assert "--optimizer" not in parser.format_help()
    assert from_args(GENTLE, parser.parse_args([])) == Optim(lr=3e-4)
    assert param_specs(GENTLE)["lr"]["default"] == 3e-4
    assert to_flags(GENTLE, {"lr": 3e-4}) == [] and to_flags(GENTLE, {"lr": 1e-3}) == ["--lr", "0.001"]


def test_cli_only_settings_are_neither_params_nor_dag_flags():
    assert to_flags(Example, {"cli_only": "y"}) == []
    assert "--langs LANGS" in add_arguments(argparse.ArgumentParser(), Example).format_help()
    assert "(comma-separated)" in add_arguments(argparse.ArgumentParser(), Example).format_help()


def test_help_may_hold_a_percent_sign():
    @dataclass
    class Pct:
        ckpt: bool = setting(False, "less memory, ~30% more compute")
        frac: float = setting(0.5, "share kept (50% by default)")

    text = add_arguments(argparse.ArgumentParser(), Pct).format_help()
    assert "~30% more compute" in text and "(50% by default)" in text
