"""The undo journal against what an adversarial run did to it (issue: reliability and security).

`sol restore` runs as root (ExecStopPost=) and writes what the journal says: it must trust the
journal only as far as `sol run` trusts its config, write only sol's own knobs, notice a journal
that lost records, close records whose object is gone (and never write to a new object that took
its name), not reuse an earlier run's stale image, and give each knob one owning agent.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sol.actuators.base import HostWriter, WriteError
from sol.actuators.file import FileKnob
from sol.actuators.restorers import TargetScope
from sol.safety.journal import UndoJournal, restore_command

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="ownership checks apply only to a root restore")
REAL_CPU = Path("/sys/fs/cgroup/cpu")


def fake_cgroup(tmp_path: Path, value: str = "1024") -> tuple[Path, Path]:
    """A fake cgroup tree (root, and one knob in it) for a scope rooted at ``root``."""
    root = tmp_path / "cgroup"
    group = root / "cpu" / "batch"
    group.mkdir(parents=True)
    knob = group / "cpu.shares"
    knob.write_text(f"{value}\n")
    return root, knob


def scope_of(root: Path) -> TargetScope:
    return TargetScope(cgroup_root=root, sys_root=Path("/sys"))


def journal_with(jpath: Path, *records: tuple[str, str, str]) -> None:
    with UndoJournal.open(jpath, fsync=False) as j:
        for kind, target, before in records:
            j.record("agent", kind, target, before)


# -- 1. trust: the journal, its directory, the config -----------------------------------------
@needs_root
@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda j: os.chown(j, 65534, -1), "owned by uid 65534"),
        (lambda j: os.chmod(j, 0o666), "world-writable"),
        (lambda j: os.chmod(j.parent, 0o777), "world-writable (mode 0777)"),
        (lambda j: os.chown(j.parent, 65534, -1), "owned by uid 65534"),
    ],
    ids=["journal-not-root", "journal-world-writable", "dir-world-writable", "dir-not-root"],
)
def test_a_root_restore_refuses_a_journal_another_user_could_have_written(
    tmp_path: Path, tamper: object, problem: str
) -> None:
    root, knob = fake_cgroup(tmp_path, "4096")
    jpath = tmp_path / "state" / "undo.journal"
    journal_with(jpath, ("file", str(knob), "2\n"))
    tamper(jpath)  # type: ignore[operator]
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=scope_of(root)) == 1
    assert "refusing undo journal" in out.getvalue() and problem in out.getvalue()
    assert knob.read_text() == "4096\n", "nothing was written"


@needs_root
def test_sol_restore_refuses_a_world_writable_config_and_the_journal_it_names(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's data\n")
    jpath = tmp_path / "evil" / "undo.journal"
    journal_with(jpath, ("file", str(victim), "pwned\n"))
    cfg = tmp_path / "sol.toml"
    cfg.write_text(f'[paths]\njournal = "{jpath}"\n')
    os.chmod(cfg, 0o666)
    proc = subprocess.run(
        [sys.executable, "-m", "sol", "restore", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "refusing config" in proc.stderr and "world-writable" in proc.stderr
    assert victim.read_text() == "root's data\n"


@pytest.mark.parametrize(
    ("kind", "target", "why"),
    [
        ("file", "{victim}", "is not a cgroup knob under"),
        ("file", "{root}/cpu/release_agent", "is not a cgroup knob sol writes (release_agent)"),
        ("file", "{root}/cpu/batch/../../../victim", "is not a cgroup knob under"),
        ("file", "{root}/cpu/batch/link/cpu.shares", "is not a cgroup knob under"),
        ("pagecache", "{victim}", "no [linux.faas] cache_dir"),
        ("damon.kdamond", "{victim}", "is not under DAMON's sysfs"),
        ("nvml.power_limit", "../../etc", "is not a GPU index or UUID"),
        ("made.up", "{victim}", "no restorer for kind"),
    ],
    ids=["outside-root", "release-agent", "dot-dot", "symlink-out", "pagecache", "damon", "nvml", "unknown"],
)
def test_restore_writes_only_knobs_this_sol_recognises_whatever_the_journal_says(
    tmp_path: Path, kind: str, target: str, why: str
) -> None:
    root, _ = fake_cgroup(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("root's data\n")
    (root / "cpu" / "release_agent").write_text("\n")
    (root / "cpu" / "batch" / "link").symlink_to(tmp_path)
    (tmp_path / "cpu.shares").write_text("untouched\n")
    target = target.format(victim=victim, root=root)
    jpath = tmp_path / "state" / "undo.journal"
    journal_with(jpath, (kind, target, "pwned\n"))
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=scope_of(root)) == 1
    assert why in out.getvalue(), out.getvalue()
    assert victim.read_text() == "root's data\n"
    assert (root / "cpu" / "release_agent").read_text() == "\n"
    assert (tmp_path / "cpu.shares").read_text() == "untouched\n"
    # refused records stay open: the operator may fix the config and run it again
    assert restore_command(jpath, out=io.StringIO(), scope=scope_of(root)) == 1


def test_restore_of_a_journal_that_is_a_symlink_to_dev_zero_ends_at_once(tmp_path: Path) -> None:
    jpath = tmp_path / "state" / "undo.journal"
    jpath.parent.mkdir()
    jpath.symlink_to("/dev/zero")
    proc = subprocess.run(
        [sys.executable, "-m", "sol", "restore", "--journal", str(jpath)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "not a regular file" in text or "world-writable" in text


# -- 2. a journal that lost records -------------------------------------------------------------
def _three_knobs(tmp_path: Path) -> tuple[Path, list[Path], Path]:
    root = tmp_path / "cgroup"
    knobs = []
    for i in range(3):
        group = root / "cpu" / f"g{i}"
        group.mkdir(parents=True)
        knobs.append(group / "cpu.shares")
        knobs[-1].write_text(f"{100 + i}\n")
    jpath = tmp_path / "state" / "undo.journal"
    with UndoJournal.open(jpath, fsync=False) as j:
        writer = HostWriter(journal=j, owner="agent")
        for knob in knobs:
            writer.write(FileKnob(knob), "999")
    return root, knobs, jpath


def _empty(j: Path) -> None:
    j.write_bytes(b"")


def _truncate(j: Path) -> None:
    data = j.read_bytes()
    j.write_bytes(data[: len(data) - 40])  # half of the last record gone


def _flip(j: Path) -> None:
    data = bytearray(j.read_bytes())
    second = data.index(b"\n") + 1  # inside the first record, after the header
    data[second + 30] ^= 0x01
    j.write_bytes(bytes(data))


def _header_only(j: Path) -> None:
    j.write_bytes(j.read_bytes().split(b"\n", 1)[0] + b"\n")


def _deleted(j: Path) -> None:
    j.unlink()


@pytest.mark.parametrize(
    "damage",
    [_empty, _truncate, _flip, _header_only, _deleted],
    ids=["emptied", "truncated", "bit-flipped", "records-cut", "deleted"],
)
def test_a_journal_that_lost_records_is_detected_restored_from_its_state_and_exits_non_zero(
    tmp_path: Path, damage: object
) -> None:
    root, knobs, jpath = _three_knobs(tmp_path)
    damage(jpath)  # type: ignore[operator]
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=scope_of(root)) == 1, out.getvalue()
    text = out.getvalue()
    assert "DAMAGED" in text and "was damaged since it was written" in text, text
    assert [k.read_text() for k in knobs] == ["100\n", "101\n", "102\n"], text
    # said once: the journal now matches its state, and a second restore has nothing to do
    again = io.StringIO()
    assert restore_command(jpath, out=again, scope=scope_of(root)) == 0, again.getvalue()
    assert "nothing to restore" in again.getvalue()


def test_a_lost_close_record_does_not_put_back_an_image_sol_had_released(tmp_path: Path) -> None:
    root, knob = fake_cgroup(tmp_path, "1024")
    jpath = tmp_path / "state" / "undo.journal"
    with UndoJournal.open(jpath, fsync=False) as j:
        HostWriter(journal=j, owner="agent").write(FileKnob(knob), "2048")
        j.release("agent")  # rollback = "not_on_exit": the host keeps 2048
    lines = jpath.read_bytes().split(b"\n")
    close = next(i for i, ln in enumerate(lines) if b'"close"' in ln)
    lines[close] = lines[close].replace(b"released", b"relaxed!")  # a flipped close
    jpath.write_bytes(b"\n".join(lines))
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=scope_of(root)) == 1
    assert "its close was lost; closed as the state file says" in out.getvalue()
    assert knob.read_text().strip() == "2048", "a released setting stays as the operator chose"


def test_a_crash_mid_append_is_not_damage(tmp_path: Path) -> None:
    root, knob = fake_cgroup(tmp_path, "1024")
    jpath = tmp_path / "state" / "undo.journal"
    with UndoJournal.open(jpath, fsync=False) as j:
        HostWriter(journal=j, owner="agent").write(FileKnob(knob), "2048")
    with jpath.open("ab") as f:
        f.write(b'0badc0de {"op":"open","id":2,"own')  # the next record, torn: never written
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=scope_of(root)) == 0, out.getvalue()
    assert "DAMAGED" not in out.getvalue() and knob.read_text() == "1024\n"


# -- 3. targets that are gone, or replaced --------------------------------------------------------
@pytest.fixture
def real_group() -> Iterator[Path]:
    if not ROOT or not (REAL_CPU / "cpu.cfs_quota_us").exists():
        pytest.skip("needs root and a writable cgroup v1 cpu controller at /sys/fs/cgroup/cpu")
    group = REAL_CPU / f"sol-test-gone-{uuid.uuid4().hex[:8]}"
    yield group
    if group.exists():
        group.rmdir()


def test_a_removed_cgroup_closes_its_record_as_gone_and_a_new_one_of_its_name_is_not_written(
    tmp_path: Path, real_group: Path
) -> None:
    real_group.mkdir()
    jpath = tmp_path / "state" / "undo.journal"
    with UndoJournal.open(jpath, fsync=False) as j:
        HostWriter(journal=j, owner="cpu_harvest").write(FileKnob(real_group / "cpu.cfs_quota_us"), "1000")
    real_group.rmdir()  # the operator removes the group while it is lent...
    real_group.mkdir()  # ... and someone makes a new one of the same name
    scope = TargetScope(cgroup_root=Path("/sys/fs/cgroup"), sys_root=Path("/sys"))
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=scope) == 0, out.getvalue()
    assert "now a different object" in out.getvalue() and "1 gone" in out.getvalue()
    assert (real_group / "cpu.cfs_quota_us").read_text().strip() == "-1", "the new group is not touched"
    again = io.StringIO()
    assert restore_command(jpath, out=again, scope=scope) == 0 and "nothing to restore" in again.getvalue()


def test_a_record_whose_cgroup_is_gone_closes_instead_of_failing_forever(
    tmp_path: Path, real_group: Path
) -> None:
    real_group.mkdir()
    jpath = tmp_path / "state" / "undo.journal"
    with UndoJournal.open(jpath, fsync=False) as j:
        HostWriter(journal=j, owner="cpu_harvest").write(FileKnob(real_group / "cpu.cfs_quota_us"), "1000")
    real_group.rmdir()
    scope = TargetScope(cgroup_root=Path("/sys/fs/cgroup"), sys_root=Path("/sys"))
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=scope) == 0, out.getvalue()
    assert "gone: the object no longer exists" in out.getvalue()
    assert not real_group.exists(), "restore never creates what it restores"


# -- 4. an earlier run's leftover is not this run's before-image -----------------------------------
def test_a_leftover_that_could_not_be_restored_is_superseded_by_this_runs_own_image(tmp_path: Path) -> None:
    root, knob = fake_cgroup(tmp_path, "-1")
    jpath = tmp_path / "state" / "undo.journal"
    journal_with(jpath, ("file", str(knob), "1000\n"))  # an old run's image; its restore failed
    with UndoJournal.open(jpath, fsync=False) as j:
        writer = HostWriter(journal=j, owner="agent")
        writer.write(FileKnob(knob), "5000")  # this run's first write: the knob held -1
        assert writer.restore().ok  # a clean stop
    assert knob.read_text().strip() == "-1", "a clean stop puts back what this run found"
    assert restore_command(jpath, out=io.StringIO(), scope=scope_of(root)) == 0


# -- 5. one owner per knob ------------------------------------------------------------------------
def test_a_second_agent_writing_another_agents_knob_is_refused_until_the_first_stops(tmp_path: Path) -> None:
    _, knob = fake_cgroup(tmp_path, "1024")
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as j:
        first, second = (
            HostWriter(journal=j, owner="cpu_harvest"),
            HostWriter(journal=j, owner="example_ewma"),
        )
        first.write(FileKnob(knob), "2048")
        with pytest.raises(WriteError) as caught:
            second.write(FileKnob(knob), "4096")
        assert caught.value.reason == "owned"
        assert "is written by agent 'cpu_harvest'; agent 'example_ewma' may not write it" in str(caught.value)
        assert knob.read_text().strip() == "2048"
        # the first agent's mitigation restores and writes again: still its knob
        assert first.restore().ok
        with pytest.raises(WriteError):
            second.write(FileKnob(knob), "4096")
        j.release_claims("cpu_harvest")  # the first agent stopped
        assert second.write(FileKnob(knob), "4096").applied
