"""Traffic-control bandwidth classes (HTB) over rtnetlink with pyroute2.

An HTB class (man 8 tc-htb) guarantees ``rate`` and may borrow up to ``ceil``; both are
bytes/s inside the kernel (``TCA_HTB_PARMS``), bits/s in this API as in ``tc``. Classes
hang off an HTB root qdisc with handle ``1:``; sol adds that root only over a default root
qdisc (``noqueue``, ``pfifo_fast``, ``fq_codel``, ``mq``, ``fq``), never over one an operator
configured (``EBUSY``).

Undo: kind ``tc.qdisc`` records the root qdisc before sol's HTB root (the restorer deletes
sol's root, and the kernel re-attaches the default); kind ``tc.class`` records a class's
rate and ceil, or ``absent`` (the restorer deletes the class). Targets are
``NETNS|IFNAME[|CLASSID]`` (``NETNS`` empty: the host's namespace).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sol.actuators.restorers import HostRoots, Restorer

__all__ = ["HtbClassKnob", "HtbRootKnob", "parse_classid", "restore_class", "restore_qdisc"]

DEFAULT_QDISCS = frozenset({"noqueue", "pfifo_fast", "fq_codel", "mq", "fq", "pfifo"})
ROOT_HANDLE = 0x10000  # "1:"
TC_H_ROOT = 0xFFFFFFFF


def parse_classid(text: str) -> int:
    """``"1:10"`` -> ``0x10010`` (hex minor, as tc writes it)."""
    major, sep, minor = text.partition(":")
    if not sep or not major or not minor:
        raise ValueError(f"class id must be 'MAJOR:MINOR' (hex), got {text!r}")
    try:
        value = (int(major, 16) << 16) | int(minor, 16)
    except ValueError:
        raise ValueError(f"class id must be 'MAJOR:MINOR' (hex), got {text!r}") from None
    if value >> 16 != 1:
        raise ValueError(f"sol's classes live under root 1:, got {text!r}")
    return value


@contextmanager
def _rtnl(netns: str) -> Iterator[Any]:
    """An rtnetlink socket in ``netns`` (empty: this namespace); netlink errors -> ``OSError``."""
    from pyroute2 import IPRoute, NetNS
    from pyroute2.netlink.exceptions import NetlinkError

    if netns:
        from pyroute2.netns import NETNS_RUN_DIR

        # NetNS() creates a missing namespace by default (O_CREAT): look first, never create.
        if "/" in netns or not os.path.exists(os.path.join(NETNS_RUN_DIR, netns)):
            raise OSError(errno.ENOENT, f"no network namespace {netns!r} in {NETNS_RUN_DIR}")
    try:
        sock = NetNS(netns, flags=0) if netns else IPRoute()
    except NetlinkError as exc:
        raise OSError(exc.code, f"netns {netns!r}: {exc}") from exc
    except OSError:
        raise
    try:
        yield sock
    except NetlinkError as exc:
        raise OSError(exc.code, f"rtnetlink: {exc}") from exc
    finally:
        sock.close()


def _index(sock: Any, ifname: str, netns: str) -> int:
    found = sock.link_lookup(ifname=ifname)
    if not found:
        raise OSError(errno.ENODEV, f"no interface {ifname!r} in netns {netns or '(host)'}")
    return int(found[0])


def _root(sock: Any, idx: int) -> dict[str, Any]:
    for q in sock.get_qdiscs(index=idx):
        if q["parent"] == TC_H_ROOT:
            return {"kind": q.get_attr("TCA_KIND"), "handle": int(q["handle"])}
    return {"kind": "noqueue", "handle": 0}


def _split(target: str, parts: int) -> list[str]:
    fields = target.split("|")
    if len(fields) != parts:
        raise ValueError(f"tc target must have {parts} '|'-separated fields, got {target!r}")
    return fields


class HtbRootKnob:
    """The root qdisc of an interface (kind ``tc.qdisc``): ``write("htb")`` installs HTB ``1:``."""

    kind = "tc.qdisc"

    def __init__(self, ifname: str, netns: str = "") -> None:
        self.ifname = ifname
        self.netns = netns

    @property
    def target(self) -> str:
        return f"{self.netns}|{self.ifname}"

    def read(self) -> str:
        with _rtnl(self.netns) as sock:
            return json.dumps(_root(sock, _index(sock, self.ifname, self.netns)), sort_keys=True)

    def write(self, raw: str) -> None:
        if raw != "htb":
            raise OSError(errno.EINVAL, f"only an HTB root can be installed, got {raw!r}")
        with _rtnl(self.netns) as sock:
            idx = _index(sock, self.ifname, self.netns)
            root = _root(sock, idx)
            if root["kind"] not in DEFAULT_QDISCS:
                raise OSError(
                    errno.EBUSY,
                    f"{self.ifname} has a configured root qdisc {root['kind']} {root['handle']:#x}: "
                    "not sol's to replace",
                )
            # default 0: unclassified traffic is not shaped (goes straight out)
            sock.tc("add", "htb", index=idx, handle="1:", default=0)

    def matches(self, written: str, readback: str) -> bool:
        root = json.loads(readback)
        return bool(root.get("kind") == "htb" and root.get("handle") == ROOT_HANDLE)


def restore_qdisc(target: str, before: Any) -> None:
    netns, ifname = _split(target, 2)
    image = json.loads(before) if isinstance(before, str) else before
    if image.get("kind") == "htb" and image.get("handle") == ROOT_HANDLE:
        return  # it was there before sol: keep it
    try:
        with _rtnl(netns) as sock:
            idx = _index(sock, ifname, netns)
            root = _root(sock, idx)
            if root["kind"] == "htb" and root["handle"] == ROOT_HANDLE:
                sock.tc("del", index=idx, handle="1:", root=True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV):
            return  # the interface or namespace is gone: nothing left to restore
        raise


class HtbClassKnob:
    """One HTB class (kind ``tc.class``): ``read`` -> ``{"rate": B/s, "ceil": B/s}`` or ``absent``;
    ``write('{"rate_bps": ..., "ceil_bps": ...}')`` adds or changes it, ``write("absent")`` deletes it."""

    kind = "tc.class"

    def __init__(self, ifname: str, classid: str, netns: str = "") -> None:
        parse_classid(classid)
        self.ifname = ifname
        self.classid = classid
        self.netns = netns

    @property
    def target(self) -> str:
        return f"{self.netns}|{self.ifname}|{self.classid}"

    def read(self) -> str:
        with _rtnl(self.netns) as sock:
            return _read_class(sock, _index(sock, self.ifname, self.netns), parse_classid(self.classid))

    def write(self, raw: str) -> None:
        with _rtnl(self.netns) as sock:
            _write_class(sock, _index(sock, self.ifname, self.netns), self.classid, raw)

    def matches(self, written: str, readback: str) -> bool:
        if written == "absent" or readback == "absent":
            return written == readback
        want = json.loads(written)
        got = json.loads(readback)
        rate, ceil = want["rate_bps"] / 8, want.get("ceil_bps", want["rate_bps"]) / 8
        # the kernel keeps bytes/s: allow the rounding of a bit rate to whole bytes
        return bool(abs(got["rate"] - rate) <= 0.01 * rate + 1 and abs(got["ceil"] - ceil) <= 0.01 * ceil + 1)


def _read_class(sock: Any, idx: int, handle: int) -> str:
    for c in sock.get_classes(index=idx):
        if int(c["handle"]) == handle:
            opts = c.get_attr("TCA_OPTIONS")
            parms = dict(opts["attrs"]).get("TCA_HTB_PARMS") if opts else None
            if parms is None:
                raise OSError(errno.EPROTO, f"class {handle:#x} is not an HTB class")
            return json.dumps({"rate": int(parms["rate"]), "ceil": int(parms["ceil"])}, sort_keys=True)
    return "absent"


def _write_class(sock: Any, idx: int, classid: str, raw: str) -> None:
    exists = _read_class(sock, idx, parse_classid(classid)) != "absent"
    if raw == "absent":
        if exists:
            sock.tc("del-class", index=idx, handle=classid, parent="1:")
        return
    spec = json.loads(raw)
    if "rate_bps" in spec:
        rate, ceil = int(spec["rate_bps"]), int(spec.get("ceil_bps", spec["rate_bps"]))
    else:  # a before-image: bytes/s as the kernel reports them
        rate, ceil = int(spec["rate"]) * 8, int(spec["ceil"]) * 8
    sock.tc(
        "change-class" if exists else "add-class",
        "htb",
        index=idx,
        handle=classid,
        parent="1:",
        rate=f"{rate}bit",
        ceil=f"{ceil}bit",
    )


def restore_class(target: str, before: Any) -> None:
    netns, ifname, classid = _split(target, 3)
    try:
        with _rtnl(netns) as sock:
            idx = _index(sock, ifname, netns)
            if before != "absent" and _root(sock, idx)["kind"] != "htb":
                return  # the HTB root is gone, and its classes with it
            _write_class(sock, idx, classid, before if isinstance(before, str) else json.dumps(before))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV):
            return
        raise


def restorers(roots: HostRoots) -> dict[str, Restorer]:
    """The knob kinds this module defines, with their restorers."""
    return {"tc.qdisc": restore_qdisc, "tc.class": restore_class}
