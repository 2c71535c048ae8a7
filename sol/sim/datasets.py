"""``sol data``: the public datasets the simulator replays, and a verified download.

Each file has its canonical public address. Where the exact bytes are known (the samples in
``../shared/data`` are byte-for-byte copies of files at a pinned commit) the SHA-256 is given;
where they are not (the full Azure archives could not be read here), the listing says so and a
download is checked by size where known and by format (magic number or trace header) instead:
no checksum is made up. A download streams to a temporary file beside the target and is
renamed into place only once verified.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sol.sim.traces import TRACE_MAX_BYTES, TraceError, detect_format


@dataclass(frozen=True)
class DataFile:
    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    #: "gzip", "xz", "rar", or a trace format name checked by detection
    format: str | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    facility: str
    description: str
    license: str
    files: tuple[DataFile, ...]


_GH = "https://raw.githubusercontent.com"
_AZ_LLM = f"{_GH}/Azure/AzurePublicDataset/b469a113cedca53ddc3bdea71a143dc4b7d8700c/data"
_FREYR = (
    f"{_GH}/IntelliSys-Lab/Freyr-sim/60c10d77f50338b21e49fd4ebab85337c9248ecf"
    "/simulations/serverless/azurefunctions-dataset2019"
)
_ZEUS = (
    f"{_GH}/ml-energy/zeus/75a8b9398034eb9baf74ca0a830c2c31bcce52cd"
    "/examples/research_reproducibility/zeus_nsdi23/trace"
)
_AZ2 = "https://azurecloudpublicdataset2.blob.core.windows.net/azurepublicdatasetv2"
_AZ1 = "https://azurecloudpublicdataset.blob.core.windows.net/azurepublicdataset"

DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "azure-llm-2023-code",
        "gpu",
        "Azure LLM inference trace 2023, code service (Splitwise, ISCA'24)",
        "CC-BY-4.0",
        (
            DataFile(
                f"{_AZ_LLM}/AzureLLMInferenceTrace_code.csv",
                "AzureLLMInferenceTrace_code.csv",
                "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6",
                320117,
                "azure-llm-2023",
            ),
        ),
    ),
    Dataset(
        "azure-llm-2023-conv",
        "gpu",
        "Azure LLM inference trace 2023, conversation service",
        "CC-BY-4.0",
        (
            DataFile(
                f"{_AZ_LLM}/AzureLLMInferenceTrace_conv.csv",
                "AzureLLMInferenceTrace_conv.csv",
                format="azure-llm-2023",
            ),
        ),
    ),
    Dataset(
        "azure-functions-2019-sample",
        "faas",
        "1,000 functions x 60 min of Azure Functions 2019 with durations and memory (Freyr-sim sample)",
        "CC-BY-4.0 data, MIT packaging",
        (
            DataFile(
                f"{_FREYR}/exp_sim_invocation_traces_0.csv",
                "azure2019_sample1000fn_60min_invocation.csv",
                "4acc234d9d6bd87311e9d0c4ed0f3d12fe60b8601c3184027a8327472a2522e3",
                133741,
                "azure-functions-2019",
            ),
            DataFile(
                f"{_FREYR}/exp_sim_duration_traces_0.csv",
                "azure2019_sample1000fn_60min_duration.csv",
                "9fca7ad0fe3bac7b5c505f6731533899195334f9d0b58b36094d8447261e87dc",
                52711,
            ),
            DataFile(
                f"{_FREYR}/exp_sim_memory_traces_0.csv",
                "azure2019_sample1000fn_60min_memory.csv",
                "cf9ad36fb5e0fef9440b3d825cfcd140beb702689cf8e26f158924201f7a7072",
                50475,
            ),
        ),
    ),
    Dataset(
        "azure-functions-2021-sample",
        "faas",
        "199 Azure Functions 2021 invocation records (vHive invitro sample)",
        "CC-BY-4.0 data, MIT packaging",
        (
            DataFile(
                f"{_GH}/vhive-serverless/invitro/a1df629445ff7aa996ae1cf411dabc5a8c30376f/data/traces/example/"
                "Azure2021/Azure2021_200.csv",
                "azure2021_invocations_sample199.csv",
                "d51e9c9ca79872313d94a26b8c52e82fc55855903c92c1f006cfd1a37700673b",
                30791,
                "azure-functions-2021",
            ),
        ),
    ),
    Dataset(
        "azure-functions-2019",
        "faas",
        "Azure Functions 2019, 14 days of per-minute counts (ATC'20), ~130 MB",
        "CC-BY-4.0",
        (
            DataFile(
                f"{_AZ2}/azurefunctions_dataset2019/azurefunctions-dataset2019.tar.xz",
                "azurefunctions-dataset2019.tar.xz",
                format="xz",
            ),
        ),
    ),
    Dataset(
        "azure-functions-2021",
        "faas",
        "Azure Functions 2021, two weeks of invocations (SOSP'21)",
        "CC-BY-4.0",
        (
            DataFile(
                f"{_AZ2}/azurefunctions_dataset2021/AzureFunctionsInvocationTraceForTwoWeeksJan2021.rar",
                "AzureFunctionsInvocationTraceForTwoWeeksJan2021.rar",
                format="rar",
            ),
        ),
    ),
    Dataset(
        "azure-vm-2017-readings",
        "cpu",
        "Azure VM trace V1 vm_cpu_readings, first of 125 files (SOSP'17)",
        "CC-BY-4.0",
        (
            DataFile(
                f"{_AZ1}/trace_data/vm_cpu_readings/vm_cpu_readings-file-1-of-125.csv.gz",
                "vm_cpu_readings-file-1-of-125.csv.gz",
                format="gzip",
            ),
        ),
    ),
    Dataset(
        "damo-recording-sample",
        "memory",
        "a real DAMON recording as `damo report raw` text (damo tests)",
        "GPL-2.0",
        (
            DataFile(
                f"{_GH}/damonitor/damo/df6d55faa031ec5838c329d810afe828ee75b773/tests/report/expects/report-raw",
                "damo-report-raw.txt",
                format="damo-raw",
            ),
        ),
    ),
    Dataset(
        "zeus-power",
        "gpu",
        "GPU throughput and power vs power limit, 4 GPU types (Zeus, NSDI'23)",
        "Apache-2.0",
        tuple(
            DataFile(f"{_ZEUS}/summary_power_{g}.csv", f"zeus_summary_power_{g}.csv", sha, size)
            for g, sha, size in (
                ("a40", "f4ec111fc9b06b353182faab9160ecb1236a486b2741ed93383b80497332031e", 29641),
                ("p100", "158e9a6784b6e2d26710529b132cf173b227dc8688f4931c19a637bce2b7503b", 18163),
                ("rtx6000", "edccecc7f8b7a6102962b03f0f37767dd9cd2f03469ebccadc9805e82901bdc4", 27704),
                ("v100", "f0b066dd1a451bd78f730e001ac3a7c411979bc7f0846f12c1a9fb604aa90628", 32534),
            )
        ),
    ),
)

_MAGIC = {"gzip": b"\x1f\x8b", "xz": b"\xfd7zXZ\x00", "rar": b"Rar!\x1a\x07"}


class DataError(Exception):
    """A dataset could not be fetched or did not verify."""


def get_dataset(name: str) -> Dataset:
    for d in DATASETS:
        if d.name == name:
            return d
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(d.name for d in DATASETS)}")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``sol data list`` and ``sol data fetch NAME [--dest DIR] [--url URL]``."""
    sub = parser.add_subparsers(dest="data_command", metavar="{list,fetch}")
    sub.required = True
    sub.add_parser("list", help="list the public datasets the simulator replays")
    fetch = sub.add_parser("fetch", help="download one dataset and verify it")
    fetch.add_argument("name", help="dataset name (see `sol data list`)")
    fetch.add_argument("--dest", type=Path, default=Path("sol-data"), help="folder to put the files in")
    fetch.add_argument(
        "--url",
        help="a mirror: the file's URL for a one-file dataset, else a folder URL to append file names to",
    )


def _check_text(d: Dataset) -> str:
    known = [f for f in d.files if f.sha256]
    if len(known) == len(d.files):
        return "sha256"
    if known:
        return "sha256 (some files)"
    return "no checksum known: size/format checked"


def render_list() -> str:
    rows = [("name", "facility", "files", "verified by", "license", "description")]
    for d in DATASETS:
        rows.append((d.name, d.facility, str(len(d.files)), _check_text(d), d.license, d.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    lines.append("")
    for d in DATASETS:
        for f in d.files:
            lines.append(f"{d.name}: {f.url}")
    return "\n".join(lines)


def _url_for(f: DataFile, d: Dataset, mirror: str | None) -> str:
    if not mirror:
        return f.url
    if len(d.files) == 1 and not mirror.endswith("/"):
        return mirror
    return mirror.rstrip("/") + "/" + f.filename


def _verify(f: DataFile, tmp: Path, digest: str, size: int) -> None:
    if f.size is not None and size != f.size:
        raise DataError(f"{f.filename}: size mismatch: expected {f.size} bytes, got {size}")
    if f.sha256 is not None and digest != f.sha256:
        raise DataError(f"{f.filename}: checksum mismatch: expected sha256 {f.sha256}, got {digest}")
    if size == 0:
        raise DataError(f"{f.filename}: empty download")
    if f.format in _MAGIC:
        with open(tmp, "rb") as fh:
            head = fh.read(8)
        if not head.startswith(_MAGIC[f.format]):
            raise DataError(f"{f.filename}: not a {f.format} file (starts with {head[:6]!r})")
    elif f.format is not None:
        try:
            got = detect_format(tmp)
        except TraceError as e:
            raise DataError(f"{f.filename}: not a {f.format} trace: {e.what}") from None
        if got != f.format:
            raise DataError(f"{f.filename}: expected a {f.format} trace, found {got}")


def fetch_file(f: DataFile, url: str, dest: Path, out: TextIO, *, timeout: float = 60.0) -> Path:
    final = dest / f.filename
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{f.filename}.", suffix=".part", dir=dest)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    # a mirror (or a file:// URL to a device) may send without end: never more than the
    # published size, or than a trace may weigh where none is published
    limit = f.size if f.size is not None else TRACE_MAX_BYTES
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    while True:
                        chunk = resp.read(1 << 20)
                        if not chunk:
                            break
                        if size + len(chunk) > limit:
                            what = "its published size" if f.size is not None else "the trace cap"
                            raise DataError(
                                f"{f.filename}: {url} sent more than {limit} bytes ({what}); stopped"
                            )
                        fh.write(chunk)
                        h.update(chunk)
                        size += len(chunk)
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise DataError(f"{f.filename}: download from {url} failed: {e}") from None
            fh.flush()
            os.fsync(fh.fileno())
        _verify(f, tmp, h.hexdigest(), size)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    how = "sha256 verified" if f.sha256 else "format checked (no published checksum)"
    out.write(f"  {final} ({size:,} bytes, {how})\n")
    return final


def data_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``sol data list|fetch``; returns the exit status (errors are printed, not raised)."""
    if args.data_command == "list":
        out.write(render_list() + "\n")
        return 0
    try:
        d = get_dataset(args.name)
        dest = Path(args.dest)
        out.write(f"fetching {d.name} into {dest}\n")
        for f in d.files:
            fetch_file(f, _url_for(f, d, getattr(args, "url", None)), dest, out)
    except DataError as e:
        out.write(f"error: {e}\n")
        return 1
    return 0
