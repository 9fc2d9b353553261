"""Target parsing, scope and exclusion checks, chunking and argument building (pure logic)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.scanning.profiles import ProfileError, build_arguments, check_ports
from collectors.scanning.runner import SAFE_TOKEN, chunk_hosts, plan_scan
from collectors.scanning.targets import Scope, TargetError, nmap_host_args, parse_target, validate_targets
from secops.config import ScanningSettings, ScanPolicy

LAB = ScanningSettings(scopes={"lab": ["198.18.7.0/24"], "lo": ["127.0.0.0/8"]}, exclusions=["198.18.7.200/29"])


def no_dns(name: str) -> list[str]:
    raise AssertionError(f"unexpected DNS lookup of {name}")


@pytest.mark.parametrize("text,kind", [
    ("198.18.7.10", "address"), ("198.18.7.0/25", "network"), ("::1", "address"), ("fe80::/120", "network"),
])
def test_parse_valid(text, kind):
    t = parse_target(text, resolver=no_dns)
    assert t.kind == kind and t.networks


def test_hostname_resolves_to_addresses_used_for_the_scope_check():
    t = parse_target("plc-1.lab.example", resolver=lambda n: ["198.18.7.11", "198.18.7.12"])
    assert t.kind == "hostname"
    assert [str(n) for n in t.networks] == ["198.18.7.11/32", "198.18.7.12/32"]
    # nmap receives the resolved addresses, never the name
    assert nmap_host_args([t]) == ["198.18.7.11", "198.18.7.12"]


@pytest.mark.parametrize("text,reason", [
    ("127.0.0.1,--script=http-title", "not allowed"),
    ("--script=broadcast", "starts with '-'"),
    ("-iL/etc/passwd", "starts with '-'"),
    ("-oN", "starts with '-'"),
    ("127.0.0.1 -sV", "whitespace"),
    (" 127.0.0.1", "whitespace"),
    ("127.0.0.1\n-oX", "whitespace"),
    ("127.0.0.1\t", "whitespace"),
    ("127.0.0.1;id", "not allowed"),
    ("$(id)", "not allowed"),
    ("`reboot`", "not allowed"),
    ("127.0.0.1|nc", "not allowed"),
    ("127.0.0.1&&ls", "not allowed"),
    ("127.0.0.1>x", "not allowed"),
    ("'127.0.0.1'", "not allowed"),
    ("127.0.0.1\x00", "not allowed"),
    ("127.0.0.1\x1b[2J", "not allowed"),
    ("", "empty"),
    ("127.0.0.999", "not a valid"),
    ("127.0.0.1/33", "not a valid"),
    ("127.0.0.1-5", "neither"),
    ("0.0.0.0/0", "more than the limit"),
    ("10.0.0.0/8", "more than the limit"),
    ("127.0.0.1/24", "host bits"),
    ("\uff11\uff12\uff17.0.0.1", "neither"),  # fullwidth digits
    ("a" * 300, "longer than 253"),
    ("foo_bar.example", "neither"),
])
def test_hostile_or_malformed_targets_refused(text, reason):
    with pytest.raises(TargetError, match=reason):
        parse_target(text, resolver=no_dns)


def test_non_string_target_refused():
    with pytest.raises(TargetError, match="must be a string"):
        parse_target(["127.0.0.1"])  # type: ignore[arg-type]


def test_default_configuration_scans_nothing():
    scope = Scope.from_config(ScanningSettings().scopes, ScanningSettings().exclusions)
    with pytest.raises(TargetError, match="default scans nothing"):
        validate_targets(["127.0.0.1"], scope)
    assert scope.expand() == []


@pytest.mark.parametrize("target,reason", [
    ("198.18.8.1", "outside the scan scope"),
    ("198.18.6.0/23", "outside the scan scope"),
    ("192.168.1.1", "outside the scan scope"),
    ("198.18.7.201", "excluded"),
    ("198.18.7.192/27", "excluded"),
    ("::1", "outside the scan scope"),
])
def test_scope_and_exclusions(target, reason):
    scope = Scope.from_config(LAB.scopes, LAB.exclusions, ["lab"])
    with pytest.raises(TargetError, match=reason):
        validate_targets([target], scope)


def test_hostname_outside_scope_refused():
    scope = Scope.from_config(LAB.scopes, LAB.exclusions, ["lab"])
    with pytest.raises(TargetError, match="outside the scan scope"):
        validate_targets(["sneaky.example"], scope, resolver=lambda n: ["198.18.7.5", "192.0.2.1"])


def test_unknown_scope_name():
    with pytest.raises(TargetError, match="unknown scan scope"):
        Scope.from_config(LAB.scopes, [], ["nope"])


def test_total_size_limit_across_targets():
    scope = Scope.from_config({"big": ["198.18.0.0/15"]}, [])
    with pytest.raises(TargetError, match="more than the limit of 300"):
        validate_targets(["198.18.0.0/24", "198.18.1.0/24"], scope, max_addresses=300)


def test_scope_expansion_removes_exclusions():
    scope = Scope.from_config(LAB.scopes, LAB.exclusions, ["lab"])
    hosts = {str(a) for a in scope.expand()}
    assert len(hosts) == 254 - 8
    assert "198.18.7.201" not in hosts and "198.18.7.199" in hosts


def test_chunking_covers_every_address_once():
    chunks = chunk_hosts(["198.18.7.0/24"], 64)
    assert len(chunks) == 4
    addrs = [a for c in chunks for n in c for a in ipaddress.ip_network(n)]
    assert len(addrs) == len(set(addrs)) == 254


def test_chunks_compacted_from_adjacent_single_address_scopes_stay_in_scope():
    # two /32 scope entries: the scheduler compacts the pair into one /31 chunk, which must still be in scope
    scope = Scope.from_config({"lab": ["198.18.0.10/32", "198.18.0.11/32", "198.18.0.12/32"]}, [], ["lab"])
    chunks = chunk_hosts([str(a) for a in scope.expand()], 2)
    assert chunks == [["198.18.0.10/31"], ["198.18.0.12"]]
    for (host,) in chunks:
        scope.check(parse_target(host))
    with pytest.raises(TargetError, match="outside the scan scope"):
        scope.check(parse_target("198.18.0.8/30"))


def test_plan_uses_policy_ports_and_timing():
    pol = ScanPolicy(name="p", scope="lab", profile="standard", ports="21,80,502", timing=5, max_rate=500)
    plan = plan_scan(["198.18.7.0/28"], "standard", LAB, policy=pol)
    assert plan.host_args == ("198.18.7.0/28",)
    args = list(plan.nmap_args)
    assert args[args.index("-p") + 1] == "21,80,502" and "-T5" in args and "500" in args
    assert all(SAFE_TOKEN.match(a) for a in args)


def test_profiles():
    assert build_arguments("discovery", root=True)[0] == "-sn"
    std = build_arguments("standard", root=False)
    assert "-sT" in std and "-sV" in std and "-O" not in std and "--top-ports" in std
    assert "-O" in build_arguments("deep", root=True)
    assert "-O" not in build_arguments("deep", root=False)  # OS detection only as root
    with pytest.raises(ProfileError, match="unknown scan profile"):
        build_arguments("aggressive")


@pytest.mark.parametrize("spec", ["22,--script=x", "80 -sV", "1-70000", "0", "-p", "22;id", "T:80,U:"])
def test_bad_port_lists(spec):
    with pytest.raises(ProfileError):
        check_ports(spec)


@given(st.text(max_size=40))
def test_anything_that_parses_is_safe_for_nmap(text):
    try:
        t = parse_target(text, resolver=lambda n: ["198.18.7.1"])
    except TargetError:
        return
    for arg in nmap_host_args([t]):
        assert SAFE_TOKEN.match(arg) and not arg.startswith("-") and "," not in arg
        ipaddress.ip_network(arg)


def test_ipv6_targets_get_dash_6_and_are_not_mixed():
    v6 = ScanningSettings(scopes={"lo": ["127.0.0.0/8", "::1/128"]})
    assert "-6" in plan_scan(["::1"], "discovery", v6).nmap_args
    assert "-6" not in plan_scan(["127.0.0.1"], "discovery", v6).nmap_args
    with pytest.raises(TargetError, match="cannot share one nmap run"):
        plan_scan(["127.0.0.1", "::1"], "discovery", v6)
