"""Settings: one frozen object from defaults < TOML < environment < flags."""

from pathlib import Path

import pytest

from idcore.settings import NodeSettings, SettingsError, build_settings


def test_defaults():
    settings = build_settings()
    assert settings == NodeSettings()
    assert settings.database == Path("idnode-data/idnode.sqlite3")


def test_later_sources_win():
    settings = build_settings(
        {"node": {"port": 9000, "host": "0.0.0.0", "data_dir": "/srv/a"}},
        {"IDNODE_PORT": "9100", "IDNODE_AUTO_ADMIN": "no", "PATH": "/bin"},
        {"port": 9200, "host": None},
    )
    assert settings.port == 9200
    assert settings.host == "0.0.0.0"
    assert settings.data_dir == Path("/srv/a")
    assert settings.auto_admin is False


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        NodeSettings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("toml", "env", "fragment"),
    [
        ({"node": {"colour": "blue"}}, {}, "unknown setting node.colour"),
        ({"node": {"port": "eighty"}}, {}, "config file node.port: port 'eighty' is not a number"),
        ({}, {"IDNODE_PORT": "70000"}, "environment IDNODE_PORT: port 70000 is outside"),
        ({}, {"IDNODE_AUTO_ADMIN": "maybe"}, "not true or false"),
        ({}, {"IDNODE_LOG_LEVEL": "loud"}, "log level 'loud'"),
        ({"node": 3}, {}, "must be a table"),
    ],
)
def test_bad_settings_name_their_source(toml, env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        build_settings(toml, env)


def test_resolver_url_defaults_to_the_qr_payload_default_and_comes_from_toml_or_environment():
    from qr.payload import DEFAULT_RESOLVER_URL  # the core cannot import qr; the two must agree

    assert NodeSettings().resolver_url == DEFAULT_RESOLVER_URL
    assert build_settings({"node": {"resolver_url": "https://id.example.cn"}}).resolver_url == "https://id.example.cn"
    assert build_settings(env={"IDNODE_RESOLVER_URL": "http://10.0.0.9:8080/id"}).resolver_url == "http://10.0.0.9:8080/id"


@pytest.mark.parametrize("url", ["ftp://x.cn", "https://", "https://x.cn/#top", "https://u:p@x.cn", "http://x.cn:port"])
def test_a_bad_resolver_url_names_its_source(url):
    with pytest.raises(SettingsError, match="environment IDNODE_RESOLVER_URL: resolver URL"):
        build_settings(env={"IDNODE_RESOLVER_URL": url})
