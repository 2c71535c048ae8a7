"""The synthetic LLM request stream's figures (``sol.sim.synthetic``) recomputed from the
Azure LLM inference trace 2023 sample they are quoted from (code service, Splitwise ISCA'24)."""

from __future__ import annotations

import csv
import math
import statistics
from datetime import datetime
from pathlib import Path

from sol.sim import synthetic as syn


def _rows(data_dir: Path) -> list[tuple[float, int, int]]:
    path = data_dir / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
    out = []
    with path.open() as f:
        for row in csv.DictReader(f):
            ts = datetime.strptime(row["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            out.append((ts, int(row["ContextTokens"]), int(row["GeneratedTokens"])))
    return out


def test_the_llm_stream_figures_are_the_code_trace_samples(data_dir: Path) -> None:
    rows = _rows(data_dir)
    span = rows[-1][0] - rows[0][0]
    assert len(rows) == 8819
    assert round(len(rows) / span, 2) == syn.LLM_CODE_RATE_PER_S
    prompts = [math.log(p) for _, p, _ in rows]
    outputs = [math.log(o) for _, _, o in rows]
    assert round(statistics.fmean(prompts), 2) == syn.LLM_PROMPT_LOG_MU
    assert round(statistics.pstdev(prompts), 2) == syn.LLM_PROMPT_LOG_SIGMA
    assert round(statistics.fmean(outputs), 2) == syn.LLM_OUTPUT_LOG_MU
    assert round(statistics.pstdev(outputs), 2) == syn.LLM_OUTPUT_LOG_SIGMA
    assert max(p for _, p, _ in rows) == syn.LLM_PROMPT_MAX
    assert max(o for _, _, o in rows) == syn.LLM_OUTPUT_MAX
