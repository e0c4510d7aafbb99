"""SSRF rules: what an upstream call may reach, checked after DNS and pinned to the checked address."""

import pytest
from django.core.exceptions import ValidationError

from registry.endpoints import validate_api_base
from routerhub.demo_upstream import Behaviour, FakeUpstream
from routing.profiling.client import ChatClient, ProviderConfigurationError
from routing.upstream.addresses import UpstreamRefused, check_address, resolve_checked
from routing.upstream.http import redact, sync_client


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "169.254.0.1", "fd00:ec2::254", "::ffff:169.254.169.254", "fe80::1", "0.0.0.0"]
)
def test_link_local_and_metadata_addresses_are_refused_even_when_listed(settings, address):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = ["0.0.0.0/0", "::/0", "metadata.internal"]
    with pytest.raises(UpstreamRefused, match="link-local or cloud-metadata"):
        check_address("metadata.internal", address)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.4", "::1", "fc00::1", "100.64.0.1"]
)
def test_private_and_loopback_addresses_need_to_be_listed(settings, address):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = []
    with pytest.raises(UpstreamRefused, match="ROUTERHUB_UPSTREAM_ALLOWED_HOSTS"):
        check_address("llm.internal", address)
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "192.168.0.10",
        "172.16.0.0/12",
        "::1",
        "fc00::/7",
        "100.64.0.0/10",
    ]
    assert check_address("llm.internal", address) == address
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = ["LLM.internal"]  # by host name, any case
    assert check_address("llm.internal", address) == address


@pytest.mark.parametrize(
    "address, carried",
    [
        ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64 (RFC 6052 well-known prefix)
        ("64:ff9b::a01:203", "10.1.2.3"),
        ("::7f00:1", "127.0.0.1"),  # IPv4-compatible (::127.0.0.1)
        ("::a00:1", "10.0.0.1"),
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4
        ("2002:c0a8:a::1", "192.168.0.10"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo, client 10.0.0.1 (obfuscated)
    ],
)
def test_ipv6_addresses_are_judged_by_the_ipv4_address_they_lead_to(settings, address, carried):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = []
    with pytest.raises(UpstreamRefused, match=f"which leads to {carried}"):
        check_address("llm.example.com", address)
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = [f"{carried}/32"]  # listing the IPv4 address admits it
    assert check_address("llm.example.com", address) == address


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "::a9fe:a9fe", "2002:a9fe:a9fe::", "64:ff9b::0:1"])
def test_metadata_and_this_host_behind_an_ipv6_prefix_are_never_called(settings, address):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = ["0.0.0.0/0", "::/0"]
    with pytest.raises(UpstreamRefused, match="link-local or cloud-metadata"):
        check_address("llm.example.com", address)
    with pytest.raises(ValidationError, match="link-local"):
        validate_api_base(f"http://[{address}]/v1")


@pytest.mark.parametrize("address", ["fec0::1", "feff::1", "64:ff9b:1::808:808", "64:ff9b:1:ff::a00:1"])
def test_site_local_and_local_use_nat64_addresses_are_private(settings, address):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = []
    with pytest.raises(UpstreamRefused, match="ROUTERHUB_UPSTREAM_ALLOWED_HOSTS"):
        check_address("llm.example.com", address)


def test_ipv6_addresses_that_lead_to_public_ipv4_addresses_are_public(settings):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = []
    for address in ("64:ff9b::808:808", "2002:808:808::1", "::808:808"):
        assert check_address("llm.example.com", address) == address


def test_public_addresses_are_allowed(settings):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = []
    assert check_address("api.example.com", "8.8.8.8") == "8.8.8.8"
    assert check_address("api.example.com", "2001:4860:4860::8888") == "2001:4860:4860::8888"


def test_a_name_is_checked_on_what_it_resolves_to(settings):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = []
    with pytest.raises(UpstreamRefused, match="resolves to 127.0.0.1"):
        resolve_checked("localhost", 80)
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = ["localhost"]
    assert resolve_checked("localhost", 80) in ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://models.example.com/v1", "http"),
        ("file:///etc/passwd", "http"),
        ("https://user:secret@models.example.com/v1", "user:password"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://[fd00:ec2::254]/v1", "link-local"),
    ],
)
def test_an_api_base_that_could_never_be_called_is_refused_when_saved(url, message):
    with pytest.raises(ValidationError, match=message):
        validate_api_base(url)


def test_calls_connect_to_the_checked_address_with_the_host_name_kept(settings):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = ["localhost"]
    with FakeUpstream() as upstream:
        url = upstream.url.replace("127.0.0.1", "localhost")
        response = sync_client().post(url + "/chat/completions", json={"model": "m", "messages": []})
        assert response.status_code == 200
        assert upstream.calls[-1].headers["host"] == f"localhost:{upstream.port}"
        settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = []
        from routing.caches import reset_all

        reset_all()  # forget the earlier resolution, as a new process would
        with pytest.raises(UpstreamRefused):
            sync_client().post(url + "/chat/completions", json={"model": "m", "messages": []})
        assert len(upstream.calls) == 1


def test_redirects_are_never_followed():
    with FakeUpstream(behaviour=Behaviour(redirect_to="http://169.254.169.254/latest/meta-data/")) as upstream:
        client = ChatClient(api_base=upstream.url, model="m", max_attempts=1)
        with pytest.raises(ProviderConfigurationError, match="307.*redirect"):
            client.complete("hello")
        assert len(upstream.calls) == 1


def test_upstream_bodies_quoted_in_errors_are_cut_and_never_hold_the_key():
    echo = '{"error": "you sent Bearer sk-secret-42 and we do not like it"}' + "x" * 1000
    with FakeUpstream(behaviour=Behaviour(status=403, error_body=echo)) as upstream:
        client = ChatClient(api_base=upstream.url, model="m", api_key="sk-secret-42", max_attempts=1)
        with pytest.raises(ProviderConfigurationError) as error:
            client.complete("hello")
    assert "sk-secret-42" not in str(error.value) and "[redacted]" in str(error.value)
    assert len(str(error.value)) < 500
    assert redact("key=abc, again abc", "abc", limit=12) == "key=[redacte…"
