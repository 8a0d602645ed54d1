"""The built-in XGBoost algorithm's hyperparameter semantics (values arrive as strings)."""

from __future__ import annotations

import pytest

from jobman.xgboost_hyperparameters import HyperparameterError, parse_hyperparameters

NOTEBOOK = {
    "max_depth": "5", "eta": "0.2", "gamma": "4", "min_child_weight": "6", "subsample": "0.8",
    "objective": "reg:linear", "early_stopping_rounds": "10", "num_round": "200",
}


def test_the_classic_notebook_hyperparameters() -> None:
    params = parse_hyperparameters(NOTEBOOK)
    assert params.num_round == 200 and params.early_stopping_rounds == 10
    assert params.booster_params == {
        "max_depth": 5, "eta": 0.2, "gamma": 4.0, "min_child_weight": 6.0, "subsample": 0.8,
        "objective": "reg:squarederror", "verbosity": 1,
    }
    assert any("reg:linear is now deprecated" in note for note in params.notes)


def test_eval_metric_list_and_choices() -> None:
    params = parse_hyperparameters({"num_round": "3", "eval_metric": "rmse,mae", "booster": "dart",
                                    "csv_weights": "1", "tree_method": "gpu_hist"})
    assert params.booster_params["eval_metric"] == ["rmse", "mae"]
    assert params.booster_params["tree_method"] == "hist"
    assert params.csv_weights is True and "csv_weights" not in params.booster_params


# Each with the text its ClientError names; the controller's config check refuses every one of them (test_inputs.py).
BAD_HYPERPARAMETERS = [
    ({"num_round": "10", "max_depht": "5"}, "max_depht"),
    ({"num_round": "10", "foo": "1", "bar": "2"}, "'bar', 'foo' were unexpected"),
    ({"max_depth": "5"}, "num_round"),
    ({"num_round": "ten"}, "num_round"),
    ({"num_round": "0"}, "num_round"),
    ({"num_round": "1.5"}, "num_round"),
    ({"num_round": "10", "eta": "1.5"}, "eta"),
    ({"num_round": "10", "eta": "nan"}, "eta"),
    ({"num_round": "10", "subsample": "0"}, "subsample"),
    ({"num_round": "10", "objective": "reg:cubic"}, "objective"),
    ({"num_round": "10", "eval_metric": "f1"}, "eval_metric"),
    ({"num_round": "10", "booster": "forest"}, "booster"),
    ({"num_round": "10", "objective": "multi:softmax"}, "num_class"),
    ({"num_round": "10", "early_stopping_rounds": "-1"}, "early_stopping_rounds"),
]


@pytest.mark.parametrize(("raw", "named"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_name_the_culprit(raw: dict[str, str], named: str) -> None:
    with pytest.raises(HyperparameterError) as error:
        parse_hyperparameters(raw)
    assert named in str(error.value)
    assert str(error.value).startswith("ClientError: ")


@pytest.mark.parametrize(("raw", "name", "expected"), [
    ({"num_round": "-3"}, "num_round", "an integer in [1, inf)"),
    ({"num_round": "1", "eta": "fast"}, "eta", "a number in [0, 1]"),
    ({"num_round": "1", "subsample": "0"}, "subsample", "a number in (0, 1]"),
    ({"num_round": "1", "base_score": "x"}, "base_score", "a number"),
    ({"num_round": "1", "booster": "forest"}, "booster", "one of gbtree, gblinear, dart"),
    ({"num_round": "1", "seed_per_iteration": "maybe"}, "seed_per_iteration", "true or false"),
    ({"num_round": "1", "zz": "1", "aa": "1"}, "zz", "a hyperparameter of the built-in XGBoost algorithm"),
    ({"num_round": "1", "objective": "multi:softmax"}, "num_class",
     "an integer in [1, inf) with objective multi:softmax"),
])
def test_errors_say_which_name_and_what_was_expected(raw: dict[str, str], name: str, expected: str) -> None:
    with pytest.raises(HyperparameterError) as error:
        parse_hyperparameters(raw)
    assert (error.value.name, error.value.expected) == (name, expected)


def test_sagemaker_internal_keys_are_ignored() -> None:
    params = parse_hyperparameters({"num_round": "1", "_tuning_objective_metric": "validation:rmse"})
    assert params.booster_params == {"verbosity": 1}


def test_integers_written_as_floats_are_accepted() -> None:
    assert parse_hyperparameters({"num_round": "20.0", "max_depth": " 3 "}).booster_params["max_depth"] == 3
