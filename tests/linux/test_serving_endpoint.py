"""The serving engine's Prometheus metrics (sol.linux.serving): real exposition text of vLLM
and TGI, served by a local HTTP server, read through the Linux GPU facility."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sol.config import LinuxConfig, LinuxGpuConfig
from sol.kernel.errors import SensorError, Unsupported
from sol.linux import LinuxBackend
from sol.linux.fake_nvml import FakeGpu, FakeNvml
from sol.linux.serving import PRESETS, MetricNames, PrometheusServing, parse_serving
from sol.sdk import ParamError

# what vLLM's /metrics serves (v0.6-0.8 names; other families cut), two engines of one model
VLLM = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.4213
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.234567e+06
vllm:prompt_tokens_total{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1000.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 98765.0
vllm:generation_tokens_total{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 35.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 17.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 40.0
vllm:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 40.0
vllm:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.5
"""

# what text-generation-inference's /metrics serves (metrics-exporter-prometheus; cut)
TGI = """\
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 6
# TYPE tgi_queue_size gauge
tgi_queue_size 2
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="64"} 3
tgi_request_input_length_bucket{le="+Inf"} 12
tgi_request_input_length_sum 20480
tgi_request_input_length_count 12
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="64"} 10
tgi_request_generated_tokens_bucket{le="+Inf"} 12
tgi_request_generated_tokens_sum 1536
tgi_request_generated_tokens_count 12
# TYPE tgi_request_count counter
tgi_request_count 12
"""


class Bodies:
    def __init__(self) -> None:
        self.by_path: dict[str, tuple[int, str]] = {}
        self.hits: dict[str, int] = {}


@pytest.fixture
def server() -> Iterator[tuple[str, Bodies]]:
    bodies = Bodies()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            bodies.hits[self.path] = bodies.hits.get(self.path, 0) + 1
            status, text = bodies.by_path.get(self.path, (404, "not found\n"))
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", bodies
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_vllm_exposition_sums_engines_of_a_server() -> None:
    s = parse_serving(VLLM, PRESETS["vllm"], t=5.0)
    assert (s.t, s.running, s.waiting) == (5.0, 5, 4)
    assert s.prompt_tokens_total == 1_235_567.0 and s.generation_tokens_total == 98_800.0


def test_tgi_exposition_reads_the_histograms_sums() -> None:
    s = parse_serving(TGI, PRESETS["tgi"], t=1.0)
    assert (s.running, s.waiting, s.prompt_tokens_total, s.generation_tokens_total) == (6, 2, 20480.0, 1536.0)


def test_a_missing_metric_or_garbage_is_a_sensor_error_naming_it() -> None:
    with pytest.raises(SensorError, match="not exported: vllm:num_requests_waiting"):
        parse_serving(VLLM.replace("vllm:num_requests_waiting", "vllm:other"), PRESETS["vllm"], t=0.0)
    with pytest.raises(SensorError, match="not the Prometheus text format"):
        parse_serving('vllm:num_requests_running{engine="0" 3\n', PRESETS["vllm"], t=0.0)


def test_metric_names_are_configurable() -> None:
    names = MetricNames("vllm:num_requests_swapped", "vllm:num_requests_waiting", "x_total", "y_total")
    text = VLLM + "x_total 7\ny_total 9\nvllm:num_requests_swapped 1\n"
    s = parse_serving(text, names, t=0.0)
    assert (s.running, s.waiting, s.prompt_tokens_total, s.generation_tokens_total) == (1, 4, 7.0, 9.0)


def test_scrapes_a_local_endpoint_once_per_window_for_the_gpus_it_serves(server: tuple[str, Bodies]) -> None:
    url, bodies = server
    bodies.by_path["/metrics"] = (200, VLLM)
    now = [10.0]
    serving = PrometheusServing([url + "/metrics"], PRESETS["vllm"], clock=lambda: now[0], gpus=4)
    assert [serving.read(i).running for i in range(4)] == [5] * 4
    assert bodies.hits["/metrics"] == 1  # one tensor-parallel server: one scrape
    now[0] = 11.0
    bodies.by_path["/metrics"] = (200, VLLM.replace("} 4.0", "} 7.0"))
    assert serving.read(2).waiting == 7 and bodies.hits["/metrics"] == 2


def test_unreachable_or_failing_endpoints_are_sensor_errors_with_the_url(server: tuple[str, Bodies]) -> None:
    url, bodies = server
    bodies.by_path["/metrics"] = (500, "boom")
    serving = PrometheusServing([url + "/metrics"], PRESETS["vllm"], clock=lambda: 0.0, gpus=1)
    with pytest.raises(SensorError, match="HTTP 500"):
        serving.read(0)
    gone = PrometheusServing(["http://127.0.0.1:9/metrics"], PRESETS["vllm"], clock=lambda: 0.0, gpus=1)
    with pytest.raises(SensorError, match="cannot reach the endpoint"):
        gone.read(0)
    with pytest.raises(ValueError, match="3 serving URLs for 2 GPUs"):
        PrometheusServing([url] * 3, PRESETS["vllm"], clock=lambda: 0.0, gpus=2)


class _Clock:
    def now(self) -> float:
        return 0.0

    def consume(self, s: float) -> None:
        return None


def test_the_linux_gpu_facility_serves_each_gpus_server(server: tuple[str, Bodies], tmp_path: Path) -> None:
    url, bodies = server
    bodies.by_path["/a"] = (200, VLLM)
    bodies.by_path["/b"] = (200, TGI)
    nvml = FakeNvml([FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb")])
    gpu = LinuxGpuConfig(serving_urls=(url + "/a", url + "/b"))
    linux = LinuxConfig(cgroup_root=tmp_path, proc_root=tmp_path, sys_root=tmp_path, gpu=gpu)
    backend = LinuxBackend(linux, clock=_Clock(), nvml=nvml, facilities=("gpu",))
    sensors = backend.sensors.gpu
    assert sensors is not None
    assert sensors.serving(0).running == 5  # type: ignore[attr-defined]
    with pytest.raises(SensorError, match="not exported"):  # a TGI server read with vLLM's names
        sensors.serving(1)  # type: ignore[attr-defined]
    (feature,) = [f for f in backend.features if f.name == "gpu.serving"]
    assert feature.supported and "vllm metrics from" in feature.detail
    bare = LinuxBackend(
        LinuxConfig(cgroup_root=tmp_path, proc_root=tmp_path, sys_root=tmp_path),
        clock=_Clock(),
        nvml=FakeNvml([FakeGpu(uuid="GPU-cccc")]),
        facilities=("gpu",),
    )
    with pytest.raises(Unsupported, match=r"no \[linux.gpu\] serving_urls"):
        bare.sensors.gpu.serving(0)  # type: ignore[union-attr]


def test_config_refuses_a_url_that_is_not_http_and_metric_lists_not_of_four() -> None:
    with pytest.raises(ParamError, match="not an http"):
        LinuxGpuConfig(serving_urls=("file:///etc/passwd",))
    with pytest.raises(ParamError, match="needs 4 sample names"):
        LinuxGpuConfig(serving_metrics=("a", "b"))
