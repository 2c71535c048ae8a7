"""HTB bandwidth classes over rtnetlink, in a network namespace each test creates and removes."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sol.actuators.base import WriteError
from sol.actuators.restorers import default_restorers
from sol.actuators.tc import HtbClassKnob, HtbRootKnob, parse_classid
from sol.linux.gate import Gate, OwnerWriter
from sol.linux.tc import LinuxTcActuators
from sol.safety.journal import UndoJournal

pytestmark = pytest.mark.linux


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    try:
        from pyroute2 import NetNS
        from pyroute2 import netns as nsmod
    except ImportError:
        pytest.skip("pyroute2 not installed")
    name = f"sol-test-{uuid.uuid4().hex[:8]}"
    try:
        ns = NetNS(name, flags=os.O_CREAT)
    except Exception as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    try:
        try:
            ns.link("add", ifname="v0", kind="veth", peer="v1")
        except Exception as exc:
            pytest.skip(f"cannot create a veth pair here: {exc}")
        ns.link("set", index=ns.link_lookup(ifname="v0")[0], state="up")
        ns.close()
        yield name
    finally:
        ns.close()
        nsmod.remove(name)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[UndoJournal]:
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as j:
        yield j


def tc_for(journal: UndoJournal | None, *, dry_run: bool = False) -> LinuxTcActuators:
    return LinuxTcActuators(
        OwnerWriter(gate=Gate(), journal=journal, owner="net", dry_run=dry_run), lambda: 0.0
    )


def test_set_class_installs_htb_journals_both_and_restore_removes_them(
    netns: str, journal: UndoJournal
) -> None:
    tc = tc_for(journal)
    tc.set_class("v0", "1:10", 10_000_000, 20_000_000, netns=netns)
    assert json.loads(HtbClassKnob("v0", "1:10", netns).read()) == {"rate": 1_250_000, "ceil": 2_500_000}
    tc.set_class("v0", "1:10", 30_000_000, netns=netns)
    assert json.loads(HtbClassKnob("v0", "1:10", netns).read()) == {"rate": 3_750_000, "ceil": 3_750_000}
    records = journal.open_records("net")
    assert [(r.kind, r.before) for r in records] == [
        ("tc.qdisc", json.dumps({"handle": 0, "kind": "noqueue"}, sort_keys=True)),
        ("tc.class", "absent"),
    ]
    assert journal.restore(default_restorers(), owner="net").ok
    assert HtbClassKnob("v0", "1:10", netns).read() == "absent"
    assert json.loads(HtbRootKnob("v0", netns).read())["kind"] == "noqueue"


def test_an_operators_root_qdisc_is_never_replaced(netns: str, journal: UndoJournal) -> None:
    from pyroute2 import NetNS

    ns = NetNS(netns)
    try:
        idx = ns.link_lookup(ifname="v0")[0]
        ns.tc("add", "tbf", index=idx, handle="8:", rate="1mbit", burst=10240, latency="50ms")
    finally:
        ns.close()
    with pytest.raises(WriteError) as info:
        tc_for(journal).set_class("v0", "1:10", 1_000_000, netns=netns)
    assert info.value.errno_name == "EBUSY"
    assert json.loads(HtbRootKnob("v0", netns).read())["kind"] == "tbf"
    assert journal.restore(default_restorers()).ok  # the open qdisc record restores to tbf: untouched
    assert json.loads(HtbRootKnob("v0", netns).read())["kind"] == "tbf"


def test_missing_interface_and_missing_netns_are_clear_errors(netns: str, journal: UndoJournal) -> None:
    with pytest.raises(WriteError) as info:
        tc_for(journal).set_class("nope0", "1:10", 1_000_000, netns=netns)
    assert info.value.errno_name == "ENODEV" and "nope0" in str(info.value)
    with pytest.raises(WriteError) as info:
        tc_for(journal).set_class("v0", "1:10", 1_000_000, netns=f"{netns}-gone")
    assert info.value.errno_name == "ENOENT"
    assert not Path(f"/var/run/netns/{netns}-gone").exists()  # looked up, never created


def test_dry_run_changes_nothing(netns: str) -> None:
    results = tc_for(None, dry_run=True).set_class("v0", "1:20", 5_000_000, netns=netns)
    assert results[0].dry_run and results[0].written == "htb"
    assert json.loads(HtbRootKnob("v0", netns).read())["kind"] == "noqueue"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"classid": "10"}, "MAJOR:MINOR"),
        ({"classid": "2:1"}, "root 1:"),
        ({"rate_bps": 0}, "positive"),
        ({"ceil_bps": 1}, "ceil_bps"),
    ],
    ids=["classid-format", "classid-root", "zero-rate", "ceil-below-rate"],
)
def test_bad_arguments_are_value_errors(kwargs: dict[str, object], error: str) -> None:
    args: dict[str, object] = {"ifname": "v0", "classid": "1:10", "rate_bps": 1000, "ceil_bps": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=error):
        tc_for(None, dry_run=True).set_class(**args)  # type: ignore[arg-type]


def test_classid_parsing() -> None:
    assert parse_classid("1:10") == 0x10010 and parse_classid("1:a") == 0x1000A
