"""The FreeSWITCH configuration in freeswitch/: well-formed, locked down, and routing calls to the engine.

Dialplan checks run the XML through a small model of mod_dialplan_xml's hunting (regex
conditions, ${var} and ${acl(...)} fields, $N substitution, action / anti-action, transfer
into another context) so they test what a call would do, not how the file is spelled.
"""
from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

FREESWITCH = Path(__file__).resolve().parents[2] / "freeswitch"
XML_FILES = sorted(FREESWITCH.rglob("*.xml"))

# Hangup causes an operator would name in park_timeout (a subset of switch_channel.c's cause
# table); FreeSWITCH silently turns a misspelt name into NORMAL_CLEARING.
HANGUP_CAUSES = frozenset(
    "NORMAL_CLEARING USER_BUSY NO_USER_RESPONSE NO_ANSWER CALL_REJECTED NO_ROUTE_DESTINATION "
    "DESTINATION_OUT_OF_ORDER NORMAL_CIRCUIT_CONGESTION NETWORK_OUT_OF_ORDER NORMAL_TEMPORARY_FAILURE "
    "SWITCH_CONGESTION SERVICE_UNAVAILABLE RECOVERY_ON_TIMER_EXPIRE ALLOTTED_TIMEOUT".split()
)


def _params(element: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in element.iter("param")}


class Acl:
    """acl.conf.xml's network lists; the most specific matching node decides, as in FreeSWITCH."""

    def __init__(self, root: ET.Element) -> None:
        self.lists = {
            lst.get("name"): (
                lst.get("default") == "allow",
                [(ipaddress.ip_network(n.get("cidr")), n.get("type") == "allow") for n in lst.iter("node")],
            )
            for lst in root.iter("list")
        }

    def allows(self, list_name: str, ip: str) -> bool:
        default, nodes = self.lists[list_name]
        address = ipaddress.ip_address(ip)
        matches = [(net.prefixlen, allow) for net, allow in nodes if address in net]
        return max(matches)[1] if matches else default


ACL = Acl(ET.parse(FREESWITCH / "autoload_configs/acl.conf.xml").getroot())


def _contexts() -> dict[str, list[ET.Element]]:
    """Context name -> our extensions, as FreeSWITCH assembles them from the files."""
    contexts = {
        ctx.get("name"): list(ctx.iter("extension"))
        for ctx in ET.parse(FREESWITCH / "dialplan/callrouter.xml").getroot().iter("context")
    }
    for name in ("public", "default"):
        contexts[name] = list(ET.parse(FREESWITCH / f"dialplan/{name}/00_callrouter.xml").getroot().iter("extension"))
    return contexts


_VAR = re.compile(r"(?<!\$)\$\{([^${}]*)\}")  # innermost ${...}; $${...} is the preprocessor's


def _expand(text: str, channel: dict[str, str]) -> str:
    while match := _VAR.search(text):
        inner = match.group(1)
        if acl_call := re.fullmatch(r"acl\((\S+) (\S+)\)", inner):
            value = str(ACL.allows(acl_call[2], acl_call[1])).lower()
        else:
            value = channel.get(inner, "")
        text = text[: match.start()] + value + text[match.end():]
    return text


def _hunt(extensions: list[ET.Element], channel: dict[str, str]) -> list[tuple[str, str]] | None:
    """Applications of the first extension that matches (none of ours uses continue="true")."""
    for extension in extensions:
        apps: list[tuple[str, str]] = []
        for condition in extension.iter("condition"):
            field = condition.get("field")
            value = _expand(field, channel) if field.startswith("${") else channel.get(field, "")
            match = re.search(condition.get("expression"), value)
            if match is None:
                anti = [(a.get("application"), a.get("data", "")) for a in condition.iter("anti-action")]
                if anti:
                    return apps + anti
                break
            apps += [
                (a.get("application"), re.sub(r"\$(\d)", lambda m: match.group(int(m[1])) or "", a.get("data", "")))
                for a in condition.iter("action")
            ]
        else:
            return apps
    return None


def place_call(context: str, destination: str, **variables: str) -> tuple[list[str], dict[str, str]]:
    """Run a call through our dialplan: the applications it reaches and its variables at the end."""
    contexts = _contexts()
    channel = {"destination_number": destination, **variables}
    executed: list[str] = []
    for _ in range(5):  # transfers
        apps = _hunt(contexts[context], channel)
        if apps is None:
            return executed, channel  # no route
        for app, data in apps:
            executed.append(app)
            if app == "set":
                name, _, value = _expand(data, channel).partition("=")
                channel[name] = value
            elif app == "transfer":
                channel["destination_number"], _, context = data.split(" ")
                break
            else:
                channel[f"last_{app}"] = data
        else:
            return executed, channel
    raise AssertionError("transfer loop")


def assert_parked_for_engine(executed: list[str], channel: dict[str, str], entry: str) -> None:
    assert executed[-1] == "park"
    assert channel["callrouter_entry"] == entry
    seconds, _, cause = channel["park_timeout"].partition(":")
    assert 5 <= int(seconds) <= 120, "a safety net, neither instant nor endless"
    assert cause in HANGUP_CAUSES
    assert channel["hangup_after_bridge"] == "false"
    assert channel["continue_on_fail"] == "true"


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(FREESWITCH)))
def test_xml_file_is_well_formed(path: Path) -> None:
    ET.parse(path)
    # FreeSWITCH's preprocessor drops every line holding <include>, </include> or <? whole.
    for line in path.read_text().splitlines():
        if "<include>" in line or "</include>" in line or "<?" in line:
            assert line.strip() in ("<include>", "</include>") or line.startswith("<?xml"), line


def test_event_socket_listens_on_loopback_for_the_engine_host_only() -> None:
    settings = _params(ET.parse(FREESWITCH / "autoload_configs/event_socket.conf.xml").getroot())
    assert ipaddress.ip_address(settings["listen-ip"]).is_loopback
    assert settings["nat-map"] == "false"
    assert settings["password"] not in ("", "ClueCon")
    acl = settings["apply-inbound-acl"]
    assert ACL.allows(acl, "127.0.0.1")
    assert not ACL.allows(acl, "192.0.2.200")
    assert not ACL.allows(acl, "10.1.2.3")


def test_inbound_did_is_parked_for_the_engine_with_its_dnis() -> None:
    executed, channel = place_call("public", "+12125550123", network_addr="203.0.113.9")
    assert_parked_for_engine(executed, channel, entry="2125550123")


def test_number_outside_the_did_range_is_not_taken() -> None:
    executed, channel = place_call("public", "+12125559999", network_addr="203.0.113.9")
    assert executed == [] and "callrouter_entry" not in channel


def test_internal_entry_number_is_parked_for_the_engine() -> None:
    executed, channel = place_call("default", "7701")
    assert_parked_for_engine(executed, channel, entry="7701")


@pytest.mark.parametrize("code, feature", [("*50", "login"), ("*51", "logout"), ("*52", "break")])
def test_agent_feature_code_is_parked_for_the_engine(code: str, feature: str) -> None:
    executed, channel = place_call("default", code, callrouter_agent_id="1001")
    assert_parked_for_engine(executed, channel, entry="agent_feature")
    assert channel["callrouter_feature"] == feature
    assert channel["callrouter_agent_id"] == "1001"


def test_feature_code_from_a_phone_that_is_no_agent_is_not_routed() -> None:
    executed, _ = place_call("default", "*50")
    assert "park" not in executed


def test_untagged_call_in_the_engine_context_is_hung_up_not_parked() -> None:
    executed, channel = place_call("callrouter", "7701")
    assert executed[-1] == "hangup" and "park" not in executed
    assert channel["last_hangup"] in HANGUP_CAUSES


def test_other_node_can_ring_a_local_agent() -> None:
    allowed = next(str(net.network_address) for net, allow in ACL.lists["callrouter_nodes"][1] if allow)
    executed, channel = place_call("public", "callrouter-agent-1001", network_addr=allowed)
    assert executed[-1] == "bridge"
    assert channel["last_bridge"].startswith("user/1001@")
    assert "park" not in executed


def test_stranger_cannot_ring_agents_through_the_inter_node_extension() -> None:
    executed, _ = place_call("public", "callrouter-agent-1001", network_addr="203.0.113.9")
    assert "bridge" not in executed


def _gateways() -> list[ET.Element]:
    return [gw for path in (FREESWITCH / "sip_profiles/external").glob("*.xml") for gw in ET.parse(path).iter("gateway")]


@pytest.mark.parametrize("gateway", _gateways(), ids=lambda g: g.get("name"))
def test_gateway_has_the_fields_sofia_requires(gateway: ET.Element) -> None:
    params = _params(gateway)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", gateway.get("name"))
    assert params.get("proxy") or params.get("realm"), "where to send the INVITE"
    if params.get("register", "true") == "true":  # sofia skips a registering gateway without these
        assert params.get("username") and params.get("password")
    if "context" in params:
        assert params["context"] in _contexts()


def test_examples_cover_a_registered_trunk_and_an_inter_node_gateway() -> None:
    registers = {gw.get("name"): _params(gw).get("register", "true") == "true" for gw in _gateways()}
    assert set(registers.values()) == {True, False}


@pytest.mark.parametrize("path", sorted((FREESWITCH / "directory/default").glob("*.xml")), ids=lambda p: p.name)
def test_agent_user_can_register_and_is_known_to_the_engine(path: Path) -> None:
    users = list(ET.parse(path).iter("user"))
    assert [u.get("id") for u in users] == [path.stem]
    variables = {v.get("name"): v.get("value") for v in users[0].iter("variable")}
    password = _params(users[0]).get("password", "")
    assert password and "default_password" not in password and password != "1234"
    assert variables["callrouter_agent_id"]
    # The agent's own calls must land where the feature codes are.
    executed, channel = place_call(variables["user_context"], "*50", callrouter_agent_id=variables["callrouter_agent_id"])
    assert executed[-1] == "park" and channel["callrouter_feature"] == "login"
