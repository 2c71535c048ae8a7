"""gpu_power on the Linux backend over the fake NVML (``sol.linux.fake_nvml``).

1. It caps a node over its budget through journaled NVML limits, and a stop puts every limit
   back to what it was.
2. NVML errors: ``NO_PERMISSION`` from the first write (a virtualised GPU) -> locked clocks;
   ``NOT_SUPPORTED`` for limits and clocks alike, ``GPU_IS_LOST`` mid-run and a limit outside the
   board's range each give a clear status line and the default, and nothing stays capped after
   the stop; without the NVML library the agent is not applicable.
3. Crash safety across processes: a daemon SIGKILLed mid-cap leaves the limits capped and
   ``sol restore`` puts them back (the boards live in a file both processes read).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pynvml
import pytest
from structlog.testing import capture_logs

from sol.actuators.nvml import restore_clocks, restore_limit
from sol.actuators.restorers import default_restorers
from sol.agents.gpu_power import GpuPowerAgent, Params
from sol.config import LinuxConfig, LinuxGpuConfig
from sol.linux.backend import LinuxBackend
from sol.linux.fake_nvml import FakeGpu, FakeNvml, FileBackedNvml, write_pynvml_shim
from sol.log import get_logger
from sol.runtime.base import AgentSpec
from sol.runtime.runner import AgentRunner
from sol.runtime.virtual import VirtualExecutor
from sol.safety.journal import UndoJournal
from tests.agentkit import ClockRef

SOL = [sys.executable, "-m", "sol"]
ORIGINAL_MW = 700_000


def boards(power_mw: int = 650_000) -> list[FakeGpu]:
    return [FakeGpu(uuid=f"GPU-{i:08x}-1111-2222-3333-444455556666", power_mw=power_mw) for i in range(2)]


def run_agent(
    nvml: FakeNvml,
    tmp_path: Path,
    until: float,
    *,
    budget_w: float = 800.0,
    midway: tuple[float, Callable[[], None]] | None = None,
    agent: GpuPowerAgent | None = None,
    serving_urls: tuple[str, ...] = (),
) -> AgentRunner:
    """Run gpu_power until ``until`` (virtual s) on 2 fake boards, then stop it; ``midway``
    changes the boards at a time."""
    restorers = {
        **default_restorers(),
        "nvml.power_limit": functools.partial(restore_limit, nvml=nvml),
        "nvml.clocks": functools.partial(restore_clocks, nvml=nvml),
    }
    clock = ClockRef()
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        linux = LinuxConfig(
            cgroup_root=tmp_path,
            proc_root=tmp_path,
            sys_root=tmp_path,
            gpu=LinuxGpuConfig(power_budget_w=budget_w, serving_urls=serving_urls),
        )
        backend = LinuxBackend(linux, journal=journal, clock=clock, nvml=nvml, facilities=("gpu",))
        executor = VirtualExecutor(
            [AgentSpec(agent or GpuPowerAgent(), None, Params(), False)],
            backend=backend,
            log=get_logger(component="test"),
            journal=journal,
            restorers=restorers,
            record=True,
        )
        clock.target = executor.vclock
        if midway is not None:
            executor.run(midway[0], stop=False)
            midway[1]()
        executor.run(until, stop=True)
        backend.close()
        return executor.runners[0]


def limits(nvml: FakeNvml) -> list[int]:
    return [g.limit_mw for g in nvml.gpus]


def test_caps_a_node_over_budget_and_a_stop_puts_every_limit_back(tmp_path: Path) -> None:
    nvml = FakeNvml(boards())
    seen: list[list[int]] = []

    def look() -> None:
        seen.append(limits(nvml))

    runner = run_agent(nvml, tmp_path, 20.0, midway=(10.0, look))
    assert runner.state == "stopped"
    assert max(seen[0]) <= 400_000  # 1,300 W drawn against 800 W: capped to the budget's share
    assert limits(nvml) == [ORIGINAL_MW] * 2
    assert "nvmlDeviceSetPowerManagementLimit" in nvml.calls


def test_it_reads_the_inference_servers_metrics_from_their_prometheus_endpoint(tmp_path: Path) -> None:
    body = (
        b"# TYPE vllm:num_requests_running gauge\n"
        b'vllm:num_requests_running{model_name="m"} 7.0\n'
        b"# TYPE vllm:num_requests_waiting gauge\n"
        b'vllm:num_requests_waiting{model_name="m"} 3.0\n'
        b"# TYPE vllm:prompt_tokens_total counter\n"
        b'vllm:prompt_tokens_total{model_name="m"} 5000.0\n'
        b"# TYPE vllm:generation_tokens_total counter\n"
        b'vllm:generation_tokens_total{model_name="m"} 900.0\n'
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        agent = GpuPowerAgent()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
        runner = run_agent(FakeNvml(boards()), tmp_path, 5.0, agent=agent, serving_urls=(url,))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert runner.state == "stopped"
    assert agent.last is not None and agent.last.serving is not None
    assert [(s.running, s.waiting) for s in agent.last.serving] == [(7, 3), (7, 3)]
    assert {"wait", "queued", "batch"} <= set(agent.features[0])


def test_limits_refused_from_the_first_write_are_held_by_locked_clocks(tmp_path: Path) -> None:
    nvml = FakeNvml(boards(), fail={"nvmlDeviceSetPowerManagementLimit": pynvml.NVML_ERROR_NO_PERMISSION})
    seen: list[Any] = []
    with capture_logs() as logs:
        runner = run_agent(
            nvml, tmp_path, 20.0, midway=(10.0, lambda: seen.extend(g.locked_clocks for g in nvml.gpus))
        )
    assert runner.state == "stopped"
    (refused,) = [e for e in logs if e["event"] == "gpu_power.limits_refused"]
    assert "NoPermission" in refused["error"] or "EPERM" in refused["error"]
    assert all(c is not None and c[1] < 1980 for c in seen)  # every board held by its clock
    assert [g.locked_clocks for g in nvml.gpus] == [None, None] and limits(nvml) == [ORIGINAL_MW] * 2


def test_not_supported_for_limits_and_clocks_is_an_error_with_its_name_and_nothing_stays(
    tmp_path: Path,
) -> None:
    code = pynvml.NVML_ERROR_NOT_SUPPORTED
    nvml = FakeNvml(
        boards(), fail={"nvmlDeviceSetPowerManagementLimit": code, "nvmlDeviceGetMinMaxClockOfPState": code}
    )
    with capture_logs() as logs:
        runner = run_agent(nvml, tmp_path, 60.0)
    errors = [e for e in logs if e["event"] == "agent.callback_failed" or e.get("log_level") == "error"]
    text = " ".join(str(e) for e in errors)
    assert "NotSupported" in text or "EOPNOTSUPP" in text
    assert runner.state in ("quarantined", "stopped")
    assert limits(nvml) == [ORIGINAL_MW] * 2 and [g.locked_clocks for g in nvml.gpus] == [None, None]


def test_a_gpu_lost_mid_run_gives_the_default_then_quarantine_and_every_limit_back(tmp_path: Path) -> None:
    nvml = FakeNvml(boards())

    def lose() -> None:
        nvml.fail["nvmlDeviceGetPowerUsage"] = pynvml.NVML_ERROR_GPU_IS_LOST

    with capture_logs() as logs:
        runner = run_agent(nvml, tmp_path, 40.0, midway=(10.0, lose))
    after = [p for t, p in runner.actions if t > 10.0]
    # the boards never follow the caps here (a constant 1,300 W): the agent is backing off
    # already; from the loss on, every act gets the default, the safe static cap (800 W less
    # 2 %, shared), and the errors are counted
    assert after and all(p.source == "default" and p.value == (390_000, 390_000) for p in after)
    assert "error" in {p.reason for p in after}
    assert runner.state == "quarantined" and "GpuIsLost" in (runner.state_reason or "")
    assert any("GpuIsLost" in str(e) for e in logs)
    assert limits(nvml) == [ORIGINAL_MW] * 2


def test_a_limit_outside_the_boards_range_is_refused_with_the_range_and_nothing_changes(
    tmp_path: Path,
) -> None:
    nvml = FakeNvml(boards(power_mw=300_000))  # under budget: no cap

    def narrow() -> None:  # the draw jumps over budget and the boards allow 500-700 W only
        for g in nvml.gpus:
            g.min_mw, g.power_mw = 500_000, 650_000

    with capture_logs() as logs:
        runner = run_agent(nvml, tmp_path, 40.0, midway=(10.0, narrow))
    text = " ".join(str(e) for e in logs)
    assert "outside its constraints [500000, 700000] mW" in text
    assert runner.state in ("quarantined", "stopped")
    assert limits(nvml) == [ORIGINAL_MW] * 2


def test_without_the_nvml_library_the_agent_is_not_applicable(tmp_path: Path) -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        reason = f"{type(exc).__name__}"
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this host has NVML and a driver: the library is not missing here")
    clock = ClockRef()
    linux = LinuxConfig(cgroup_root=tmp_path, proc_root=tmp_path, sys_root=tmp_path)
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        backend = LinuxBackend(linux, journal=journal, clock=clock, facilities=("gpu",))
        (feature,) = [f for f in backend.features if f.name == "gpu"]
        assert not feature.supported and "NVML unavailable" in feature.detail and reason in feature.detail
        executor = VirtualExecutor(
            [AgentSpec(GpuPowerAgent(), None, Params(), False)],
            backend=backend,
            log=get_logger(component="test"),
            journal=journal,
        )
        clock.target = executor.vclock
        executor.run(5.0)
        assert executor.runners[0].state == "not-applicable"
        assert "gpu" in (executor.runners[0].state_reason or "")
        backend.close()


# -- crash safety across processes --------------------------------------------------------


@pytest.fixture
def shim(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    state = FileBackedNvml.create(tmp_path / "boards.json", boards())
    pkg = tmp_path / "shim"
    pkg.mkdir()
    write_pynvml_shim(pkg, state)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pkg), str(root)]), "PYTHONUNBUFFERED": "1"}
    yield state, env


def test_the_shim_serves_the_file_to_another_process(shim: tuple[Path, dict[str, str]]) -> None:
    state, env = shim
    code = (
        "import pynvml; pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(1); "
        "pynvml.nvmlDeviceSetPowerManagementLimit(h, 333000); print(pynvml.nvmlDeviceGetUUID(h))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "GPU-00000001-1111-2222-3333-444455556666"
    assert [g.limit_mw for g in FileBackedNvml.read(state)] == [ORIGINAL_MW, 333_000]


def test_sigkill_mid_cap_then_sol_restore_puts_every_limit_back(
    shim: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    state, env = shim
    cfg = tmp_path / "sol.toml"
    cfg.write_text(
        f"""
backend = "linux"
rollback = "auto"

[paths]
state_dir = "{tmp_path / "state"}"

[log]
format = "json"
level = "info"

[linux]
cgroup_root = "{tmp_path}"
proc_root = "{tmp_path}"
sys_root = "{tmp_path}"

[linux.gpu]
power_budget_w = 800

[daemon]
metrics = false
control_socket = "{tmp_path / "sol.sock"}"

[agents.gpu_power]
enabled = true
"""
    )
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 (kept for the failure message)
    d = subprocess.Popen([*SOL, "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60.0:
            if all(g.limit_mw < ORIGINAL_MW for g in FileBackedNvml.read(state)):
                break
            if d.poll() is not None:
                break
            time.sleep(0.05)
        capped = [g.limit_mw for g in FileBackedNvml.read(state)]
        assert all(mw <= 400_000 for mw in capped), (capped, (tmp_path / "daemon.log").read_text()[-3000:])
        d.send_signal(signal.SIGKILL)
        d.wait(timeout=30)
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()
        log.close()
    assert [g.limit_mw for g in FileBackedNvml.read(state)] == capped  # the kill left them capped
    restore = subprocess.run(
        [*SOL, "restore", "--config", str(cfg)], env=env, capture_output=True, text=True, timeout=120
    )
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert [g.limit_mw for g in FileBackedNvml.read(state)] == [ORIGINAL_MW] * 2
    assert [g.locked_clocks for g in FileBackedNvml.read(state)] == [None, None]
