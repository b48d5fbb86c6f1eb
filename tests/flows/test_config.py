"""The monitor TOML: valid files load, every mistake is an error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import ConfigError, load_config, parse_config, window_seconds

MINIMAL = """
[source]
paths = ["data/*.parquet"]
[reference]
path = "ref/reference.json"
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return load_config(path)


def test_minimal_config_defaults_and_relative_paths(tmp_path: Path):
    config = _load(tmp_path, MINIMAL)
    assert config.history_dir == tmp_path / "history"
    assert config.state_dir == tmp_path / "history" / "_state"
    assert config.reference_path == tmp_path / "ref" / "reference.json"
    assert config.source_patterns() == [str(tmp_path / "data" / "*.parquet")]
    assert config.runner.pipeline_args == []  # local files: the in-process engine
    assert config.build_policy().default.significance == pytest.approx(0.009)
    assert config.thresholds()["*"][0] == "js_divergence"


def test_full_config(tmp_path: Path):
    config = _load(
        tmp_path,
        MINIMAL
        + """
[features]
amount = { kind = "numeric", family = "normal" }
[window]
size = "15m"
[policy.default]
consecutive = 2
[policy.features.amount]
parameter_warn = 0.2
[[notify]]
name = "ops"
type = "webhook"
url_env = "OPS_URL"
[[notify]]
name = "team"
type = "block"
block = "slack-webhook/team"
[schedule]
cron = "*/15 * * * *"
""",
    )
    policy = config.build_policy()
    assert policy.for_feature("amount").parameter_warn == 0.2
    assert policy.for_feature("amount").consecutive == 2  # inherits the default override
    assert window_seconds(config.window.size) == 900
    assert [n.name for n in config.notify] == ["ops", "team"]


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("[source2]\nx = 1\n", "source2: unknown key"),
        ('[window]\nsize = "1 hour"\n', "window.size"),
        ('[runner]\npipeline_args = "--runner=FnApiRunner"\n', "runner.pipeline_args"),
        ("[policy.default]\nwarm = 0.1\n", "unknown keys ['warm']"),
        ("[policy.features.x]\nsignificance = 2.0\n", "features.x: significance"),
        ('[[notify]]\nname = "a"\ntype = "webhook"\nurl = "http://x"\n', "notify.0.url: unknown"),
        ('[[notify]]\nname = "a"\ntype = "webhook"\n', "url_env or url_secret"),
        ('[[notify]]\nname = "a"\ntype = "pager"\nurl_env = "X"\n', "notify.0.type"),
        ('[[notify]]\nname = "a"\ntype = "block"\n', "type-slug/name"),
        ('[features]\nx = { kind = "numeric", family = "weibull" }\n', "features.x.family"),
        ("[reference.extra]\nn = 1\n", "reference.extra: unknown key"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, extra: str, expected: str):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, MINIMAL + extra)
    assert expected in str(info.value)
    assert "monitor.toml" in str(info.value)


def test_missing_sections_and_bad_toml(tmp_path: Path):
    with pytest.raises(ConfigError, match="reference: required key is missing"):
        _load(tmp_path, '[source]\npaths = ["a"]\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, "[source\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="base_dir"):
        parse_config({"base_dir": "/", "source": {"paths": ["a"]}, "reference": {"path": "r"}})


def test_source_horizon_and_csv_dialect(tmp_path: Path):
    from pipelines.io import CsvDialect

    config = _load(tmp_path, MINIMAL)
    source = config.source
    assert (source.max_future, source.max_age, source.csv) == ("1d", "off", None)
    assert config.source.max_future_seconds == 86_400
    text = MINIMAL.replace(
        "[reference]",
        'max_future = "36h"\nmax_age = "3650d"\n'
        'csv = { delimiter = ";", quote = "\'", encoding = "latin-1", header = true }\n'
        "[reference]",
    )
    config = _load(tmp_path, text)
    assert config.source.max_future_seconds == 36 * 3600 and config.source.max_age == "3650d"
    from flows.monitor.run import _csv_dialect

    assert _csv_dialect(config) == CsvDialect(";", "'", "latin-1", True)
    off = _load(tmp_path, MINIMAL.replace("[reference]", 'max_future = "off"\n[reference]'))
    assert off.source.max_future_seconds is None
    for bad, key in (
        ('max_future = "soon"', "source.max_future"),
        ('csv = { delimiter = ";;" }', "source.csv"),
        ('csv = { encoding = "klingon" }', "source.csv"),
        ('csv = { sep = ";" }', "source.csv.sep"),
    ):
        with pytest.raises(ConfigError, match=key):
            _load(tmp_path, MINIMAL.replace("[reference]", f"{bad}\n[reference]"))
