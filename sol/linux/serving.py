"""The inference server's own metrics, from its local Prometheus endpoint (vLLM, TGI).

NVML's utilisation reads 100 % whenever a kernel runs, prompt prefill and token decoding
alike; which phase a GPU is in, how many requests wait and how fast tokens flow are known to
the serving engine, which exports them for Prometheus. ``PrometheusServing`` scrapes
``[linux.gpu] serving_urls`` (one per GPU in NVML order; one URL for all GPUs or repeated for
the GPUs of one tensor-parallel server), parses the text exposition format with
``prometheus_client``'s parser and returns :class:`~sol.facilities.ServingStats`:

=================  ===============================  ================================
field              vLLM (``vllm``)                  TGI (``tgi``)
=================  ===============================  ================================
running            ``vllm:num_requests_running``    ``tgi_batch_current_size``
waiting            ``vllm:num_requests_waiting``    ``tgi_queue_size``
prompt tokens      ``vllm:prompt_tokens_total``     ``tgi_request_input_length_sum``
generated tokens   ``vllm:generation_tokens_total`` ``tgi_request_generated_tokens_sum``
=================  ===============================  ================================

``serving_metrics`` overrides the four sample names. Samples of one name with several label
sets (a model per label, several engines) are summed. An endpoint that cannot be reached, a
body that does not parse, or a metric it lacks raises :class:`~sol.kernel.errors.SensorError`
naming the URL and the problem; one scrape serves every GPU of a URL within ``max_age_s``.
"""

from __future__ import annotations

import math
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from sol.facilities import ServingStats
from sol.kernel.errors import SensorError

__all__ = ["PRESETS", "MetricNames", "PrometheusServing", "parse_serving"]


@dataclass(frozen=True, slots=True)
class MetricNames:
    running: str
    waiting: str
    prompt_tokens: str
    generation_tokens: str

    def all(self) -> tuple[str, str, str, str]:
        return (self.running, self.waiting, self.prompt_tokens, self.generation_tokens)


PRESETS: dict[str, MetricNames] = {
    "vllm": MetricNames(
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
    ),
    "tgi": MetricNames(
        "tgi_batch_current_size",
        "tgi_queue_size",
        "tgi_request_input_length_sum",
        "tgi_request_generated_tokens_sum",
    ),
}

#: the largest body read from an endpoint (a vLLM /metrics is ~30-100 KiB)
MAX_BODY = 4 << 20


def parse_serving(text: str, names: MetricNames, *, t: float, source: str = "metrics") -> ServingStats:
    """The four figures of ``names`` in a text exposition ``text`` (sums over label sets)."""
    wanted = set(names.all())
    sums: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in wanted:
                    value = float(sample.value)
                    if not math.isfinite(value):
                        continue  # a NaN gauge (no data yet) says nothing
                    sums[sample.name] = sums.get(sample.name, 0.0) + value
    except (ValueError, TypeError, IndexError) as exc:
        raise SensorError(source, f"not the Prometheus text format: {type(exc).__name__}: {exc}") from exc
    missing = [n for n in names.all() if n not in sums]
    if missing:
        raise SensorError(source, f"metric(s) not exported: {', '.join(missing)}")
    return ServingStats(
        t=t,
        running=round(sums[names.running]),
        waiting=round(sums[names.waiting]),
        prompt_tokens_total=sums[names.prompt_tokens],
        generation_tokens_total=sums[names.generation_tokens],
    )


def _fetch(url: str, timeout: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # the operator's http(s) URL
            body: bytes = resp.read(MAX_BODY + 1)
    except urllib.error.HTTPError as exc:
        raise SensorError(url, f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SensorError(url, f"cannot reach the endpoint: {reason}") from exc
    if len(body) > MAX_BODY:
        raise SensorError(url, f"body over {MAX_BODY} bytes")
    return str(body.decode("utf-8", errors="replace"))


class PrometheusServing:
    """``serving(index)`` of the GPU facility over the servers' Prometheus endpoints."""

    def __init__(
        self,
        urls: Sequence[str],
        names: MetricNames,
        *,
        clock: Callable[[], float],
        gpus: int,
        timeout_s: float = 0.5,
        max_age_s: float = 0.25,
        fetch: Callable[[str, float], str] = _fetch,
    ) -> None:
        if not urls:
            raise ValueError("no serving URL")
        if len(urls) not in (1, gpus):
            raise ValueError(f"{len(urls)} serving URLs for {gpus} GPUs: give one, or one per GPU")
        self.urls = list(urls) * gpus if len(urls) == 1 else list(urls)
        self.names = names
        self.clock = clock
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self.fetch = fetch
        self._cache: dict[str, tuple[float, ServingStats]] = {}
        self._lock = threading.Lock()

    def read(self, index: int) -> ServingStats:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.urls):
            raise IndexError(f"GPU index {index!r} out of range (0..{len(self.urls) - 1})")
        url = self.urls[index]
        now = self.clock()
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None and 0.0 <= now - hit[0] <= self.max_age_s:
                return hit[1]
        stats = parse_serving(self.fetch(url, self.timeout_s), self.names, t=now, source=url)
        with self._lock:
            self._cache[url] = (now, stats)
        return stats
