"""Workload hints (sol.hints) and platform notices (sol.notices): the store, the board, the
commands, and a real unprivileged workload on a real socket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sol.control import CommandError, ControlServer, Peer
from sol.hints import HintError, Hints, HintStore, HintView, Target, parse_hints
from sol.hints_service import HintService, peer_cgroup
from sol.notices import NoticeBoard

# -- hints: what is accepted ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        pytest.param({"colour": "blue"}, "unknown hint key(s) ['colour']; known: deadline", id="unknown-key"),
        pytest.param({"priority": "urgent"}, "'priority' must be one of low, normal, high", id="priority"),
        pytest.param({"harvestable": "yes"}, "'harvestable' must be true or false", id="bool-as-text"),
        pytest.param({"latency_tolerance_ms": -1}, "'latency_tolerance_ms' must be in [0,", id="negative"),
        pytest.param({"latency_tolerance_ms": float("nan")}, "must be in", id="nan"),
        pytest.param({"invocation_every_s": True}, "must be a number", id="bool-as-number"),
        pytest.param({"deadline": "tomorrow"}, "'deadline' must be a number", id="deadline-text"),
    ],
)
def test_a_bad_hint_is_refused_naming_the_key(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(HintError) as info:
        parse_hints(raw)
    assert problem in str(info.value)


def test_hints_parse_typed() -> None:
    h = parse_hints(
        {"priority": "low", "harvestable": True, "latency_tolerance_ms": 50, "power_cap_ok": False}
    )
    assert h == Hints(priority="low", harvestable=True, latency_tolerance_ms=50.0, power_cap_ok=False)
    assert h.rank == 0 and Hints().rank == 1 and Hints(priority="high").rank == 2


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        pytest.param({}, "exactly one of", id="neither"),
        pytest.param({"cgroup": "a", "pid": 1}, "exactly one of", id="both"),
        pytest.param({"cgroup": "a/../../etc"}, "without", id="dot-dot"),
        pytest.param({"cgroup": 7}, "must be a string", id="cgroup-number"),
        pytest.param({"pid": -3}, "positive integer", id="negative-pid"),
        pytest.param({"pid": "12"}, "positive integer", id="pid-text"),
    ],
)
def test_a_bad_target_is_refused(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(HintError, match=problem):
        Target.parse(raw)


# -- the store ----------------------------------------------------------------------------------


def test_set_merges_clear_forgets_and_the_limit_holds(tmp_path: Path) -> None:
    store = HintStore(path=tmp_path / "hints.json", max_targets=2)
    a, b, c = Target.cgroup("a"), Target.cgroup("b"), Target.cgroup("c")
    store.set(a, {"priority": "low"})
    assert store.set(a, {"harvestable": True}) == Hints(priority="low", harvestable=True)
    assert store.clear(a, ["priority"]) == Hints(harvestable=True)
    store.set(b, {"priority": "high"})
    with pytest.raises(HintError, match="2 targets already"):
        store.set(c, {"priority": "high"})
    store.set(b, {"deadline": 2e9})  # a known target may still change
    assert store.clear(b) == Hints() and b not in store.snapshot()
    store.set(c, {"priority": "high"})  # room again
    with pytest.raises(HintError, match="unknown hint key"):
        store.clear(c, ["colour"])


def test_hints_survive_a_restart_and_a_damaged_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "hints.json"
    store = HintStore(path=path)
    store.set(Target.cgroup("machine.slice/vm-a"), {"far_memory_ok": True})
    store.set(Target.pid(os.getpid(), 12345), {"priority": "high"})
    again = HintStore(path=path)
    assert again.get(Target.cgroup("machine.slice/vm-a")) == Hints(far_memory_ok=True)
    assert again.get(Target.pid(os.getpid(), 12345)) == Hints(priority="high")
    for damage in ("{not json", json.dumps({"targets": [{"kind": "x", "name": "a", "hints": {}}]})):
        path.write_text(damage)
        log = _Log()
        fresh = HintStore(path=path, log=log)
        assert fresh.snapshot() == {}
        assert [e for e, _ in log.events] == ["hints.state_ignored"]


class _Log:
    """A log that remembers events (the store logs through whatever it is given)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    warning = debug = error = info


def test_hints_expire_with_their_target() -> None:
    gone: set[Target] = set()
    log = _Log()
    store = HintStore(alive=lambda t: t not in gone, log=log)
    a, b = Target.cgroup("a"), Target.pid(4242, 99)
    store.set(a, {"priority": "low"})
    store.set(b, {"priority": "high"})
    assert store.expire() == []
    gone.add(b)
    assert store.expire() == [b]
    assert set(store.snapshot()) == {a}
    assert ("hints.expired", {"target": "pid:4242"}) in log.events


def test_real_targets_expire_when_the_process_or_cgroup_is_gone(tmp_path: Path) -> None:
    svc = HintService.build(
        state_dir=tmp_path, hint_dir=None, notices_dir=None, max_targets=8, notices_kept=16,
        cgroup_root=tmp_path / "cgroup",
    )  # fmt: skip
    (tmp_path / "cgroup" / "cpu" / "vm-a").mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        svc._cmd_hint_admin({"cgroup": "vm-a", "set": {"priority": "low"}}, Peer(1, 0, 0))
        svc._cmd_hint_admin({"pid": child.pid, "set": {"priority": "high"}}, Peer(1, 0, 0))
        assert svc.store.expire() == []
        child.kill()
        child.wait()
        (tmp_path / "cgroup" / "cpu" / "vm-a").rmdir()
        assert {t.kind for t in svc.store.expire()} == {"cgroup", "pid"}
    finally:
        child.kill()


def test_a_hint_directory_is_read_bad_files_skipped_and_changes_seen(tmp_path: Path) -> None:
    d = tmp_path / "hints.d"
    d.mkdir()
    (d / "a.toml").write_text('[[hint]]\ncgroup = "vm-a"\npriority = "low"\nharvestable = true\n')
    (d / "b.toml").write_text('[[hint]]\ncgroup = "vm-b"\ncolour = "red"\n')
    (d / "c.toml").write_text("[[hint]\n")
    (d / "ignored.txt").write_text("not a hint file")
    log = _Log()
    store = HintStore(hint_dir=d, log=log)
    assert store.refresh_files()
    assert store.get(Target.cgroup("vm-a")) == Hints(priority="low", harvestable=True)
    assert set(store.file_problems) == {"b.toml", "c.toml"}
    assert "unknown hint key(s) ['colour']" in store.file_problems["b.toml"]
    assert "hint #1" in store.file_problems["b.toml"] and "not valid TOML" in store.file_problems["c.toml"]
    assert [e for e, _ in log.events].count("hints.file_skipped") == 2
    assert not store.refresh_files()  # nothing changed: not read again
    # the socket channel wins per key; the file's other keys stay
    store.set(Target.cgroup("vm-a"), {"priority": "high"})
    assert store.get(Target.cgroup("vm-a")) == Hints(priority="high", harvestable=True)
    (d / "a.toml").write_text('[[hint]]\ncgroup = "vm-a"\nfar_memory_ok = true\n')
    (d / "b.toml").unlink()
    assert store.refresh_files()
    assert store.get(Target.cgroup("vm-a")) == Hints(priority="high", far_memory_ok=True)
    assert set(store.file_problems) == {"c.toml"}


def test_an_agent_sees_the_closest_cgroup_with_hints() -> None:
    table = {
        Target.cgroup("machine.slice"): Hints(priority="low"),
        Target.cgroup("machine.slice/vm-a"): Hints(),
    }
    view = HintView(lambda: table)
    assert view(cgroup="machine.slice/vm-b/vcpu0") == Hints(priority="low")
    assert view(cgroup="machine.slice/vm-a") == Hints()
    assert view(cgroup="system.slice") == Hints() and view() == Hints()


# -- notices ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_non_urgent_action_waits_its_lead_time_and_notices_are_ordered() -> None:
    clock = Clock()
    board = NoticeBoard(clock)
    me = board.for_agent("gpu_power")
    assert not me.ready("power-cap", "gpu:1", lead_s=2.0, duration_s=30.0)
    clock.t += 1.0
    assert not me.ready("power-cap", "gpu:1", lead_s=2.0)  # the same notice, still pending
    clock.t += 1.0
    assert me.ready("power-cap", "gpu:1", lead_s=2.0)  # out for 2 s: act
    assert not me.ready("power-cap", "gpu:1", lead_s=2.0)  # the next one is announced afresh
    urgent = board.for_agent("cpu_harvest").urgent("take-back-cores", "machine.slice/vm-a")
    notices, missed, last = board.since(0)
    assert [n.seq for n in notices] == [1, 2, 3] and missed == 0 and last == 3
    first = notices[0]
    assert (first.agent, first.action, first.target, first.at - first.announced) == (
        "gpu_power",
        "power-cap",
        "gpu:1",
        2.0,
    )
    assert first.duration_s == 30.0 and not first.urgent
    assert urgent.urgent and urgent.at == urgent.announced
    with pytest.raises(ValueError, match="lead time"):
        me.ready("power-cap", "gpu:2", lead_s=-1.0)


def test_a_client_that_falls_behind_is_told_what_it_missed_and_filters_by_cgroup() -> None:
    board = NoticeBoard(Clock(), capacity=4)
    for i in range(6):
        board.publish("a", "act", f"machine.slice/vm-{i % 2}")
    board.publish("a", "mitigate", "*")
    notices, missed, last = board.since(0)
    assert [n.seq for n in notices] == [4, 5, 6, 7] and missed == 3 and last == 7
    mine, _, _ = board.since(0, cgroup="machine.slice/vm-1")
    assert [n.seq for n in mine] == [4, 6, 7]  # its own, and the one for every target
    above, _, _ = board.since(0, cgroup="machine.slice")  # a cgroup sees what concerns those below
    assert len(above) == 4
    assert board.since(7) == ([], 0, 7)


def test_per_cgroup_notice_files_are_written_and_a_failed_write_is_counted(tmp_path: Path) -> None:
    board = NoticeBoard(Clock(), files=tmp_path / "notices", per_target=2)
    for action in ("lend-cores", "take-back-cores", "lend-cores"):
        board.publish("cpu_harvest", action, "machine.slice/vm-a", lead_s=1.0)
    board.publish("gpu_power", "power-cap", "gpu:0")  # not a cgroup: no file
    doc = json.loads((tmp_path / "notices" / "machine.slice" / "vm-a.json").read_text())
    assert doc["cgroup"] == "machine.slice/vm-a"
    assert [n["action"] for n in doc["notices"]] == ["take-back-cores", "lend-cores"]
    assert sorted(p.name for p in (tmp_path / "notices").rglob("*")) == ["machine.slice", "vm-a.json"]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    board = NoticeBoard(Clock(), files=blocked)
    n = board.publish("cpu_harvest", "lend-cores", "vm-b")
    assert board.file_errors == 1 and board.since(0)[0] == [n]


def test_the_runtime_says_when_it_mitigates() -> None:
    from sol.runtime.virtual import VirtualExecutor
    from sol.sdk import Agent, Schedule, Verdict
    from sol.testing import default_backend

    class Harmful(Agent):
        name = "harmful"
        schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=1.0)

        def collect(self) -> float:
            return 0.0

        def default_predict(self) -> float:
            return 0.0

        def act(self, prediction: Any) -> None:
            return None

        def assess_performance(self) -> Verdict:
            return Verdict.fail("always")

    board = NoticeBoard(Clock())
    from sol.log import get_logger

    backend = default_backend(1)
    VirtualExecutor([_spec(Harmful())], backend=backend, log=get_logger(), notices=board).run(5.0)
    notices, _, _ = board.since(0)
    assert notices and all(n.agent == "harmful" and n.urgent for n in notices)
    assert notices[0].action == "mitigate" and notices[0].detail["cause"].startswith("harm")


def _spec(agent: Any) -> Any:
    from sol.runtime.base import AgentSpec

    return AgentSpec(agent)


# -- the workload's permissions -----------------------------------------------------------------


def fake_proc(root: Path, pid: int, cgroup_lines: str, uid: int | None = None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cgroup").write_text(cgroup_lines)
    (d / "stat").write_text(f"{pid} (x y) S " + " ".join(["0"] * 18) + " 777 0 0\n")
    if uid is not None:
        os.chown(d, uid, -1)


@pytest.mark.parametrize(
    ("lines", "found"),
    [
        pytest.param("0::/machine.slice/vm-a.scope\n", "machine.slice/vm-a.scope", id="v2"),
        pytest.param("12:cpu,cpuacct:/vm-a\n1:name=systemd:/x\n", "vm-a", id="v1-cpu"),
        pytest.param("1:name=systemd:/user.slice/s\n", "user.slice/s", id="v1-systemd"),
        pytest.param("0::/\n", "", id="root"),
        pytest.param("3:cpu:/vm-a\n0::/\n", "vm-a", id="hybrid"),
    ],
)
def test_the_peers_cgroup_is_read_from_proc(tmp_path: Path, lines: str, found: str) -> None:
    fake_proc(tmp_path, 50, lines)
    assert peer_cgroup(50, tmp_path) == found
    assert peer_cgroup(51, tmp_path) is None


def workload_service(tmp_path: Path) -> HintService:
    proc = tmp_path / "proc"
    fake_proc(proc, 100, "0::/machine.slice/vm-a.scope\n")
    fake_proc(proc, 101, "0::/machine.slice/vm-a.scope/worker\n", uid=os.geteuid())
    fake_proc(proc, 102, "0::/machine.slice/vm-b.scope\n")
    fake_proc(proc, 103, "0::/\n")
    return HintService(HintStore(), NoticeBoard(Clock()), proc_root=proc, admins=frozenset({0}))


@pytest.mark.parametrize(
    ("peer_pid", "target", "allowed"),
    [
        pytest.param(100, {"cgroup": "machine.slice/vm-a.scope"}, True, id="own-cgroup"),
        pytest.param(100, {"cgroup": "machine.slice/vm-a.scope/worker"}, True, id="below-own"),
        pytest.param(100, {"cgroup": "machine.slice/vm-b.scope"}, False, id="a-neighbour"),
        pytest.param(100, {"cgroup": "machine.slice"}, False, id="above-own"),
        pytest.param(100, {"cgroup": "machine.slice/vm-a.scope-evil"}, False, id="same-prefix"),
        pytest.param(100, {"pid": 100}, True, id="own-pid"),
        pytest.param(100, {"pid": 101}, True, id="own-user-in-own-cgroup"),
        pytest.param(100, {"pid": 102}, False, id="pid-elsewhere"),
        pytest.param(103, {"cgroup": "anything"}, False, id="root-cgroup-owns-nothing"),
    ],
)
def test_a_workload_sets_hints_for_its_own_cgroup_only(
    tmp_path: Path, peer_pid: int, target: dict[str, object], allowed: bool
) -> None:
    svc = workload_service(tmp_path)
    hint = svc.workload_commands()["hint"]
    peer = Peer(peer_pid, os.geteuid() if os.geteuid() != 0 else 65534, 65534)
    if os.geteuid() == 0:  # the fake proc's owner must be the peer's uid for the pid rule
        for pid in (101,):
            os.chown(tmp_path / "proc" / str(pid), peer.uid, -1)
    args = {**target, "set": {"priority": "low"}}
    if allowed:
        assert hint.run(args, peer)["hints"] == {"priority": "low"}
    else:
        with pytest.raises(CommandError) as info:
            hint.run(args, peer)
        assert info.value.code == "forbidden"
    # root may set any target
    assert svc.admin_commands()["hint"].run(args, Peer(1, 0, 0))["hints"] == {"priority": "low"}


def test_a_workload_reads_only_its_own_notices_and_hints(tmp_path: Path) -> None:
    svc = workload_service(tmp_path)
    svc.board.publish("cpu_harvest", "lend-cores", "machine.slice/vm-a.scope")
    svc.board.publish("cpu_harvest", "lend-cores", "machine.slice/vm-b.scope")
    svc.store.set(Target.cgroup("machine.slice/vm-b.scope"), {"priority": "high"})
    peer = Peer(100, 65534, 65534)
    cmds = svc.workload_commands()
    got = cmds["notices"].run({}, peer)
    assert [n["target"] for n in got["notices"]] == ["machine.slice/vm-a.scope"] and got["last"] == 2
    with pytest.raises(CommandError, match="your own cgroup"):
        cmds["notices"].run({"cgroup": "machine.slice/vm-b.scope"}, peer)
    assert cmds["hints"].run({}, peer)["targets"] == []
    for bad in ({"after": -1}, {"after": "x"}, {"colour": 1}):
        with pytest.raises(CommandError) as info:
            cmds["notices"].run(bad, peer)
        assert info.value.code == "bad-request"
    for bad in ({"cgroup": "machine.slice/vm-a.scope"}, {"cgroup": "machine.slice/vm-a.scope", "set": 3}):
        with pytest.raises(CommandError, match="set"):
            cmds["hint"].run(bad, peer)


# -- for real: an unprivileged process in a cgroup of its own -------------------------------------

NOBODY = 65534
OTHER_PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin") or sys.executable
CPU = Path("/sys/fs/cgroup/cpu")
CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
for line in sys.argv[2:]:
    s.sendall(line.encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    print(buf.decode().strip(), flush=True)
"""


@pytest.fixture
def own_cgroup() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a cgroup and runs a client as nobody")
    if not (CPU / "cgroup.procs").is_file() or not os.access(OTHER_PYTHON, os.X_OK):
        pytest.skip("needs a writable cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu and a system python3")
    name = f"sol_test_hints_{uuid.uuid4().hex[:8]}"
    (CPU / name).mkdir()
    try:
        yield name
    finally:
        (CPU / name).rmdir()


@pytest.mark.linux
def test_an_unprivileged_process_sets_hints_for_its_own_cgroup_and_not_another(own_cgroup: str) -> None:
    root = Path(__import__("tempfile").mkdtemp(prefix="sol-", dir="/tmp"))
    os.chmod(root, 0o755)
    svc = HintService.build(state_dir=root, hint_dir=None, notices_dir=None, max_targets=8, notices_kept=16)
    server = ControlServer(root / "hints.sock", svc.workload_commands(), public=True)
    server.start()
    try:

        def enter() -> None:  # join the test cgroup, then drop to nobody
            with open(CPU / own_cgroup / "cgroup.procs", "w") as f:
                f.write("0")
            os.setgid(NOBODY)
            os.setuid(NOBODY)

        requests = [
            {"cmd": "hint", "cgroup": own_cgroup, "set": {"priority": "low", "harvestable": True}},
            {"cmd": "hint", "cgroup": "system.slice", "set": {"priority": "high"}},
            {"cmd": "hints"},
            {"cmd": "hint", "cgroup": own_cgroup, "set": {"colour": "red"}},
        ]
        out = subprocess.run(
            [OTHER_PYTHON, "-c", CLIENT, str(root / "hints.sock"), *map(json.dumps, requests)],
            preexec_fn=enter,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.splitlines()
        replies = [json.loads(line) for line in out]
        assert replies[0]["ok"] and replies[0]["result"]["hints"] == {"priority": "low", "harvestable": True}
        assert replies[1]["code"] == "forbidden" and own_cgroup in replies[1]["error"]
        assert [t["cgroup"] for t in replies[2]["result"]["targets"]] == [own_cgroup]
        assert replies[3]["code"] == "bad-request" and "colour" in replies[3]["error"]
        assert svc.store.get(Target.cgroup("system.slice")).empty
        assert svc.store.get(Target.cgroup(own_cgroup)) == Hints(priority="low", harvestable=True)
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.linux
def test_a_subscriber_that_never_reads_delays_nothing_and_is_cut_off(tmp_path: Path) -> None:
    import socket
    import time

    root = Path(__import__("tempfile").mkdtemp(prefix="sol-", dir="/tmp"))
    svc = HintService.build(state_dir=root, hint_dir=None, notices_dir=None, max_targets=8, notices_kept=4096)
    for i in range(4000):  # a full board: every reply is ~1 MB
        svc.board.publish("cpu_harvest", "lend-cores", f"vm-{i}", detail={"cores": i})
    server = ControlServer(root / "sol.sock", svc.admin_commands())
    server.start()
    lazy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lazy.connect(str(root / "sol.sock"))
        lazy.setblocking(False)
        sent, cut = 0, False
        for _ in range(200):  # ask, never read
            try:
                lazy.send(b'{"cmd": "notices"}\n')
                sent += 1
            except BlockingIOError:
                break
            except (BrokenPipeError, ConnectionResetError):
                cut = True  # cut off already
                break
        # meanwhile the board takes notices as fast as ever, and others are answered
        for i in range(1000):
            svc.board.publish("cpu_harvest", "take-back-cores", f"vm-{i}")
        from sol.control import request

        reply = request(root / "sol.sock", {"cmd": "notices", "after": svc.board.last_seq - 1})
        assert reply["ok"] and len(reply["result"]["notices"]) == 1
        time.sleep(2.0)  # the server answers what it read; the replies pile up unread
        got = 0
        lazy.settimeout(20)
        while not cut and got < 1 << 30:  # now read: what was queued, then the end of the connection
            try:
                data = lazy.recv(1 << 20)
            except (ConnectionResetError, TimeoutError):
                cut = True
                break
            if not data:
                cut = True
                break
            got += len(data)
        assert cut, "a client that never reads was never cut off"
        assert got < 200 * 150_000  # far fewer replies than it asked for
        assert sent >= 2, sent
    finally:
        lazy.close()
        server.close()
        shutil.rmtree(root, ignore_errors=True)
