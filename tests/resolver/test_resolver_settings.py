"""Building a recursive node's settings from TOML, environment and flags."""

from __future__ import annotations

import pytest

from idcore.settings import SettingsError
from idcore.site import HashOption
from resolver.resolver_settings import build_resolver_settings, site_from_urls


def test_flags_give_one_bootstrap_site_with_several_servers():
    settings = build_resolver_settings(flags={"bootstrap": "http://127.0.0.1:8001, https://[::1]:8443", "port": 9000})
    (site,) = settings.bootstrap
    assert site.primary and site.hash_option == HashOption.BY_ALL
    assert [(s.address, s.interfaces[0].protocol, s.interfaces[0].port) for s in site.servers] == [
        ("127.0.0.1", "HTTP", 8001), ("::1", "HTTPS", 8443)
    ]
    assert settings.port == 9000 and settings.redis_url is None


def test_toml_lists_of_lists_are_a_primary_site_and_mirrors_and_later_sources_win():
    toml = {"resolver": {"bootstrap": [["http://10.0.0.1:8000"], ["http://10.0.0.2:8000"]], "max_ttl": 600,
                         "redis_url": "redis://127.0.0.1:6379/0"}}
    env = {"IDNODE_RESOLVER_MAX_TTL": "300", "IDNODE_RESOLVER_NEGATIVE_TTL": "5"}
    settings = build_resolver_settings(toml, env, {"negative_ttl": 7})
    assert [site.primary for site in settings.bootstrap] == [True, False]
    assert settings.policy.max_ttl == 300 and settings.policy.negative_ttl == 7
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "toml, flags, message",
    [
        ({}, {}, "no bootstrap servers"),
        ({}, {"bootstrap": "http://example.com:80"}, "IP address"),
        ({}, {"bootstrap": "ftp://127.0.0.1:21"}, "http"),
        ({}, {"bootstrap": "http://127.0.0.1"}, "port"),
        ({"resolver": {"bootstrap": ["http://127.0.0.1:1"], "colour": "red"}}, {}, "unknown setting resolver.colour"),
        ({}, {"bootstrap": "http://127.0.0.1:1", "port": "many"}, "--port"),
        ({}, {"bootstrap": "http://127.0.0.1:1", "min_ttl": 10, "max_ttl": 5}, "above max_ttl"),
        ({}, {"bootstrap": "http://127.0.0.1:1", "request_timeout": 10.0, "time_budget": 5.0}, "time_budget"),
    ],
)
def test_bad_settings_name_the_problem(toml, flags, message):
    with pytest.raises(SettingsError, match=message):
        build_resolver_settings(toml, {}, flags)


def test_site_from_urls_numbers_servers():
    site = site_from_urls(["http://127.0.0.1:1", "http://127.0.0.2:2"], primary=False)
    assert [s.server_id for s in site.servers] == [1, 2] and not site.primary


def test_public_url_comes_from_toml_or_environment_normalised():
    toml = {"resolver": {"bootstrap": ["http://127.0.0.1:1"], "public_url": "HTTPS://ID.Example.CN/"}}
    assert build_resolver_settings(toml).public_url == "https://id.example.cn"
    env = {"IDNODE_RESOLVER_PUBLIC_URL": "http://Example.cn:8080/id/"}
    assert build_resolver_settings(toml, env).public_url == "http://example.cn:8080/id"
    assert build_resolver_settings(flags={"bootstrap": "http://127.0.0.1:1"}).public_url is None


@pytest.mark.parametrize("url", ["ftp://example.cn", "https://example.cn/?q=1", "https://user@example.cn", "example.cn"])
def test_a_bad_public_url_is_refused(url):
    with pytest.raises(SettingsError, match="public_url"):
        build_resolver_settings(flags={"bootstrap": "http://127.0.0.1:1", "public_url": url})
