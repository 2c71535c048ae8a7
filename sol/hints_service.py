"""The daemon's side of hints and notices: the store, the board, and their socket commands.

Two command tables:

* on the control socket (root and the daemon's uid change, the control group reads):
  ``hint`` (set or clear any target's hints), ``hints`` (every target's), ``notices``;
* on the workload socket (``[hints] socket``, mode 0666): the same three, each limited to the
  peer's own cgroup (and the cgroups below it) and its own PID. The peer is who the kernel says
  (``SO_PEERCRED``); its cgroup is read from ``/proc/<pid>/cgroup`` (the v1 ``cpu``
  hierarchy's path, else ``name=systemd``'s, else the v2 path). A process in the root cgroup owns no cgroup.

Requests::

    {"cmd": "hint", "cgroup": "machine.slice/vm-a.scope", "set": {"priority": "low"}}
    {"cmd": "hint", "pid": 4242, "clear": ["deadline"]}          # or "clear": true: every key
    {"cmd": "hints"}                                             # {"targets": [...]}
    {"cmd": "notices", "after": 17, "cgroup": "machine.slice/vm-a.scope", "limit": 100}

``notices`` answers ``{"notices": [...], "missed": N, "last": SEQ}``: the notices after
``after``, how many of those the board no longer holds, and the last sequence number (ask
again with ``after = last``). ``sol notices --follow`` does exactly that twice a second.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sol.control import Command, CommandError, Peer
from sol.hints import HintError, HintStore, Target, cgroup_exists, pid_start
from sol.notices import NoticeBoard

__all__ = ["HintService", "peer_cgroup"]

#: notices one ``notices`` reply carries at most
MAX_NOTICES_PER_REPLY = 1000


def peer_cgroup(pid: int, proc_root: Path = Path("/proc")) -> str | None:
    """The cgroup of ``pid`` (a path below the root, "" for the root), or None if unknown."""
    try:
        text = (proc_root / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    v2 = cpu = systemd = None
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            cpu = path
        elif controllers == "name=systemd":
            systemd = path
    # a hybrid host lists the unified hierarchy too ("0::/"), usually unused: the v1 cpu
    # hierarchy's path then says where the process is, as cgroup v1 tools see it
    found = cpu if cpu is not None else systemd if systemd is not None else v2
    return None if found is None else found.strip("/")


def _within(path: str, owner: str) -> bool:
    return path == owner or path.startswith(owner + "/")


class HintService:
    def __init__(
        self,
        store: HintStore,
        board: NoticeBoard,
        *,
        proc_root: Path = Path("/proc"),
        admins: frozenset[int] = frozenset({0}),
    ) -> None:
        self.store = store
        self.board = board
        self.proc_root = proc_root
        self.admins = admins
        self._next_refresh = 0.0

    @classmethod
    def build(
        cls,
        *,
        state_dir: Path,
        hint_dir: Path | None,
        notices_dir: Path | None,
        max_targets: int,
        notices_kept: int,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        proc_root: Path = Path("/proc"),
        log: Any = None,
        clock: Any = time.time,
        host: bool = True,
    ) -> HintService:
        """``host``: targets are this host's cgroups and processes (the Linux backend), and
        expire when gone; False (a simulated node): they name simulated workloads, kept."""

        def alive(t: Target) -> bool:
            if not host:
                return True
            if t.kind == "cgroup":
                return cgroup_exists(t.name, cgroup_root)
            start = pid_start(int(t.name), proc_root)
            return start != 0 and (t.start == 0 or start == t.start)

        store = HintStore(
            path=state_dir / "hints.json", hint_dir=hint_dir, alive=alive, max_targets=max_targets, log=log
        )
        store.refresh_files()
        board = NoticeBoard(clock, capacity=notices_kept, files=notices_dir, log=log)
        return cls(store, board, proc_root=proc_root)

    def housekeeping(self, now: float, every: float) -> None:
        """Read the hint directory again if it changed, drop the hints of targets gone."""
        if now < self._next_refresh:
            return
        self._next_refresh = now + every
        self.store.refresh_files()
        self.store.expire()

    # -- commands ----------------------------------------------------------------------------
    def admin_commands(self) -> dict[str, Command]:
        return {
            "hint": Command(self._cmd_hint_admin, mutating=True, help="set or clear a target's hints (root)"),
            "hints": Command(lambda a, p: self._list(a, None), help="every target's hints"),
            "notices": Command(lambda a, p: self._notices(a, None), help="notices after a sequence number"),
        }

    def workload_commands(self) -> dict[str, Command]:
        return {
            "hint": Command(
                self._cmd_hint_workload, cache=False, help="set or clear your own cgroup's hints"
            ),
            "hints": Command(self._cmd_hints_workload, cache=False, help="the hints of your own cgroup"),
            "notices": Command(self._cmd_notices_workload, cache=False, help="notices for your own cgroup"),
        }

    def _target(self, args: Mapping[str, Any], peer: Peer | None) -> Target:
        try:
            target = Target.parse(args)
        except HintError as exc:
            raise CommandError("bad-request", str(exc)) from None
        if target.kind == "pid":
            start = pid_start(int(target.name), self.proc_root)
            if start == 0:
                raise CommandError("bad-request", f"no process {target.name}")
            target = Target.pid(int(target.name), start)
        return target

    def _apply(self, target: Target, args: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(args) - {"cgroup", "pid", "set", "clear"})
        if unknown:
            raise CommandError(
                "bad-request", f"unknown argument(s) {unknown}; known: cgroup, pid, set, clear"
            )
        set_, clear = args.get("set"), args.get("clear")
        if (set_ is None) == (clear is None):
            raise CommandError(
                "bad-request", 'give exactly one of "set": {key: value} or "clear": [keys] | true'
            )
        try:
            if set_ is not None:
                if not isinstance(set_, dict):
                    raise CommandError("bad-request", '"set" must be an object of hint keys and values')
                hints = self.store.set(target, set_)
            else:
                if clear is True:
                    keys = None
                elif isinstance(clear, list) and all(isinstance(k, str) for k in clear):
                    keys = clear
                else:
                    raise CommandError("bad-request", '"clear" must be true or a list of hint keys')
                hints = self.store.clear(target, keys)
        except HintError as exc:
            raise CommandError("bad-request", str(exc)) from None
        return {"target": target.as_dict(), "hints": hints.as_dict()}

    def _cmd_hint_admin(self, args: Mapping[str, Any], peer: Peer) -> Any:
        return self._apply(self._target(args, peer), args)

    def _owner(self, peer: Peer) -> str | None:
        """The cgroup a (non-admin) peer owns, or None when it owns none (refused)."""
        if peer.uid in self.admins:
            return None
        found = peer_cgroup(peer.pid, self.proc_root)
        if not found:
            raise CommandError(
                "forbidden",
                "your process is in the root cgroup (or its cgroup cannot be read): it owns no cgroup "
                "to set hints for; run it in a cgroup of its own, or ask root (sol hint)",
            )
        return found

    def _check_owned(self, target: Target, peer: Peer) -> None:
        if peer.uid in self.admins:
            return
        owner = self._owner(peer)
        assert owner is not None
        if target.kind == "cgroup":
            if not _within(target.name, owner):
                raise CommandError(
                    "forbidden",
                    f"you may set hints for your own cgroup ({owner}) and those below it, not {target.name}",
                )
            return
        pid = int(target.name)
        if pid == peer.pid:
            return
        theirs = peer_cgroup(pid, self.proc_root)
        try:
            uid = (self.proc_root / str(pid)).stat().st_uid
        except OSError:
            uid = -1
        if theirs is None or uid != peer.uid or not _within(theirs, owner):
            raise CommandError(
                "forbidden",
                f"process {pid} is not yours: neither you nor in your cgroup ({owner}) as your user",
            )

    def _cmd_hint_workload(self, args: Mapping[str, Any], peer: Peer) -> Any:
        target = self._target(args, peer)
        self._check_owned(target, peer)
        return self._apply(target, args)

    def _list(self, args: Mapping[str, Any], owner: str | None) -> Any:
        unknown = sorted(set(args) - {"cgroup"})
        if unknown:
            raise CommandError("bad-request", f"unknown argument(s) {unknown}; known: cgroup")
        rows = []
        for t, h in sorted(self.store.snapshot().items()):
            if owner is not None and not (t.kind == "cgroup" and _within(t.name, owner)):
                continue
            if "cgroup" in args and not (t.kind == "cgroup" and t.name == str(args["cgroup"]).strip("/")):
                continue
            rows.append({**t.as_dict(), "hints": h.as_dict()})
        problems = dict(self.store.file_problems) if owner is None else {}
        return {"targets": rows, "file_problems": problems}

    def _cmd_hints_workload(self, args: Mapping[str, Any], peer: Peer) -> Any:
        return self._list(args, self._owner(peer))

    def _notices(self, args: Mapping[str, Any], owner: str | None) -> Any:
        unknown = sorted(set(args) - {"after", "cgroup", "limit"})
        if unknown:
            raise CommandError("bad-request", f"unknown argument(s) {unknown}; known: after, cgroup, limit")
        after, limit, cgroup = (
            args.get("after", 0),
            args.get("limit", MAX_NOTICES_PER_REPLY),
            args.get("cgroup"),
        )
        for name, v in (("after", after), ("limit", limit)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise CommandError("bad-request", f'"{name}" must be a whole number >= 0, got {v!r}')
        if cgroup is not None and not isinstance(cgroup, str):
            raise CommandError("bad-request", f'"cgroup" must be a path, got {cgroup!r}')
        if owner is not None:
            cgroup = (cgroup or owner).strip("/")
            if not _within(cgroup, owner):
                raise CommandError(
                    "forbidden", f"you may read the notices of your own cgroup ({owner}), not {cgroup}"
                )
        notices, missed, last = self.board.since(after, cgroup, min(limit, MAX_NOTICES_PER_REPLY))
        return {"notices": [n.as_dict() for n in notices], "missed": missed, "last": last}

    def _cmd_notices_workload(self, args: Mapping[str, Any], peer: Peer) -> Any:
        return self._notices(args, self._owner(peer))
