from __future__ import annotations

from pathlib import Path

import pytest

from jobman.config import load_experiment
from jobman.errors import ConfigError
from jobman.run import check_inputs
from tests.conftest import EXAMPLE, write_experiment


def test_example_parses_to_the_seed_workflow() -> None:
    x = load_experiment(EXAMPLE)
    assert x.name == "boston-xgboost" and x.backend == "local"
    assert (x.data.test_size, x.data.validation_size, x.data.target) == (0.33, 0.33, "MEDV")
    assert x.training.max_runtime_s == 86400
    assert x.training.hyperparameters["num_round"] == "200"
    assert x.training.hyperparameters["eta"] == "0.2"
    assert x.endpoint.ttl_s == 3600 and x.endpoint.keep is False
    assert x.evaluation.max_payload_bytes == 5_000_000


def test_digest_ignores_comments_and_follows_content(tmp_path: Path) -> None:
    base = load_experiment(EXAMPLE).digest
    commented = write_experiment(tmp_path / "a.toml", {"seed = 0": "seed = 0  # same"})
    changed = write_experiment(tmp_path / "b.toml", {"seed = 0": "seed = 1"})
    assert load_experiment(commented).digest == base
    assert load_experiment(changed).digest != base


BAD_INPUTS = [
    ({"[data]": "colour = 'red'\n[data]"}, "colour: unknown key"),
    ({"target = \"MEDV\"": "target = \"MEDV\"\nshuffle = true"}, "data.shuffle: unknown key"),
    ({"seed = 0": "seed = \"zero\""}, "data.seed: expected an integer"),
    ({"test_size = 0.33": "test_size = 1.5"}, "data.test_size: expected a number between 0 and 1"),
    ({"validation_size = 0.33": "validation_size = 0"}, "data.validation_size: expected a number between 0 and 1"),
    ({"instance_count = 1": "instance_count = 0"}, "training.instance_count: expected a positive number"),
    ({"initial_instance_count = 1": "initial_instance_count = -1"},
     "endpoint.initial_instance_count: expected a positive number"),
    ({'name = "boston-xgboost"': 'name = "boston_xgboost"'}, "name: expected letters, digits and single hyphens"),
    ({'name = "boston-xgboost"': 'name = "' + "x" * 41 + '"'}, "name: expected letters, digits"),
    ({'ttl = "1h"': 'ttl = "soon"'}, "endpoint.ttl: expected a duration"),
    ({'max_runtime = "24h"': 'max_runtime = "-5m"'}, "training.max_runtime: expected a duration"),
    ({"max_payload_bytes = 5_000_000": "max_payload_bytes = 7_000_000"},
     "evaluation.max_payload_bytes: expected a positive integer of at most 6291456"),
    ({"max_payload_bytes = 5_000_000": "max_payload_bytes = 200_000_000"},  # not blamed on the transform limit
     "evaluation.max_payload_bytes: expected a positive integer of at most 6291456"),
    ({'backend = "local"': 'backend = "azure"'}, "backend: expected 'local' or 'sagemaker'"),
    ({"keep = false": "keep = \"no\""}, "endpoint.keep: expected true or false"),
    ({'region = "us-east-1"': 'region = "mars-1"'}, "aws.region: expected an AWS region"),
    ({"num_round = 200": ""}, "training.hyperparameters.num_round: missing"),
    ({'instance_type = "ml.m4.xlarge"\ninstance_count': 'instance_type = "m4"\ninstance_count'},
     "training.instance_type: expected a SageMaker instance type"),
    # Durations: finite, and within what the service takes for each key.
    ({'ttl = "1h"': "ttl = nan"}, "endpoint.ttl: expected a duration like '90s', '30m', '1h' or '2d' of at most 365d, "
                                  "got nan"),
    ({'ttl = "1h"': "ttl = inf"}, "endpoint.ttl: expected a duration"),
    ({'ttl = "1h"': 'ttl = "999999999d"'}, "endpoint.ttl: expected a duration"),
    ({'ttl = "1h"': 'ttl = "366d"'}, "of at most 365d, got '366d'"),
    ({'max_runtime = "24h"': 'max_runtime = "99999999d"'},
     "training.max_runtime: expected a duration like '90s', '30m', '1h' or '2d' from 1s to 28d (SageMaker's "
     "MaxRuntimeInSeconds is at most 2,419,200 seconds), got '99999999d'"),
    ({'max_runtime = "24h"': 'max_runtime = "28d1s"'}, "training.max_runtime: expected a duration"),
    ({'max_runtime = "24h"': 'max_runtime = 0.5'}, "training.max_runtime: expected a duration"),
    ({'ttl = "1h"': 'ttl = "1h"\nwait_timeout = "8d"'}, "endpoint.wait_timeout: expected a duration like '90s', "
                                                        "'30m', '1h' or '2d' of at most 7d, got '8d'"),
    # A seed is what scikit-learn takes.
    ({"seed = 0": "seed = -1"}, "data.seed: expected an integer from 0 to 4294967295 (2**32 - 1), got -1"),
    ({"seed = 0": "seed = 99999999999999"}, "data.seed: expected an integer from 0 to 4294967295"),
    # Hyperparameters, against the algorithm's own table.
    ({'objective = "reg:squarederror"': 'objective = "bogus:thing"'},
     "training.hyperparameters.objective: expected one of reg:linear, reg:squarederror"),
    ({"num_round = 200": "num_round = -3"}, "training.hyperparameters.num_round: expected an integer in [1, inf), "
                                            "got -3"),
    ({"max_depth = 5": "max_depht = 5"}, "training.hyperparameters.max_depht: unknown key; did you mean 'max_depth'?"),
    ({"max_depth = 5": "zzz = 5"},
     "training.hyperparameters.zzz: unknown key; expected a hyperparameter of the built-in XGBoost algorithm"),
    ({"eta = 0.2": "eta = nan"}, "training.hyperparameters.eta: expected a number in [0, 1], got nan"),
    ({"eta = 0.2": "eta = true"}, "training.hyperparameters.eta: expected a number in [0, 1], got True"),
    ({"eta = 0.2": 'eta = "' + "1" * 2501 + '"'}, "training.hyperparameters.eta: expected a value of at most 2,500 "
                                                  "characters (SageMaker's limit)"),
    # An unknown key comes first, with the closest valid key, at every level.
    ({'name = "boston-xgboost"': 'nmae = "x"'}, "nmae: unknown key; did you mean 'name'?"),
    ({"seed = 0": "sed = 0", 'name = "boston-xgboost"': "name = 5"}, "data.sed: unknown key; did you mean 'seed'?"),
    ({"[data]": "[dat]"}, "dat: unknown key; did you mean 'data'?"),
    ({"keep = false": "kepe = false", 'ttl = "1h"': 'ttl = "never"'},
     "endpoint.kepe: unknown key; did you mean 'keep'?"),
    ({"max_depth = 5": "maxdepth = 5", "num_round = 200": ""},
     "training.hyperparameters.maxdepth: unknown key; did you mean 'max_depth'?"),
    ({"[aws]": "[aws]\ncolour = 1"}, "aws.colour: unknown key; expected one of region, role_arn, bucket, prefix, "
                                     "profile, scheduler_role_arn"),
    ({'source = "boston"': 'source = "boston"\n"a\\nb" = 1'}, 'data."a\\nb": unknown key'),
]


@pytest.mark.parametrize(("replace", "message"), BAD_INPUTS)
def test_bad_input_names_file_and_key(tmp_path: Path, replace: dict[str, str], message: str) -> None:
    path = write_experiment(tmp_path / "x.toml", replace)
    with pytest.raises(ConfigError) as info:
        check_inputs(load_experiment(path))
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="nope.toml: no such file"):
        load_experiment("nope.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(path)


def test_sagemaker_backend_needs_a_role(tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "x.toml", {
        'backend = "local"': 'backend = "sagemaker"',
        'role_arn = "arn:aws:iam::123456789012:role/SageMakerRole"': 'role_arn = ""',
    })
    with pytest.raises(ConfigError, match="aws.role_arn: missing"):
        load_experiment(path)


def test_unknown_region_for_the_image(tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "x.toml", {'region = "us-east-1"': 'region = "xx-nowhere-9"'})
    with pytest.raises(ConfigError, match="no built-in XGBoost 1.7-1 image is published for region 'xx-nowhere-9'"):
        check_inputs(load_experiment(path))


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (None, "data.source: no CSV file at"),
        ("A,B\n1,2\n" * 6, "data.target: column 'MEDV' is not in the table"),
        ("MEDV,town\n" + "1,abc\n" * 12, "data.source: column 'town' is not numeric"),
    ],
)
def test_bad_data(tmp_path: Path, csv: str | None, message: str) -> None:
    if csv is not None:
        (tmp_path / "table.csv").write_text(csv)
    path = write_experiment(tmp_path / "x.toml", {'source = "boston"': 'source = "table.csv"'})
    with pytest.raises(ConfigError, match=message):
        check_inputs(load_experiment(path))
