"""`sol data` against a local HTTP server on 127.0.0.1 (no internet here)."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sol.sim import datasets
from sol.sim.datasets import DataFile, Dataset, add_data_arguments, data_command

LLM = b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        th.join(5)


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sol data")
    add_data_arguments(p)
    return p.parse_args(list(argv))


def _with_dataset(monkeypatch: pytest.MonkeyPatch, ds: Dataset) -> None:
    monkeypatch.setattr(datasets, "DATASETS", (*datasets.DATASETS, ds))


def test_list_names_every_dataset_and_says_where_no_checksum_is_known() -> None:
    out = io.StringIO()
    assert data_command(_parse("list"), out) == 0
    text = out.getvalue()
    for d in datasets.DATASETS:
        assert d.name in text
    assert "no checksum known" in text and "sha256" in text


@pytest.mark.parametrize(
    ("served", "sha_ok", "code", "message"),
    [
        pytest.param(LLM, True, 0, "sha256 verified", id="good-checksum"),
        pytest.param(LLM.replace(b"4808", b"4809"), True, 1, "checksum mismatch", id="checksum-mismatch"),
        pytest.param(None, True, 1, "download", id="missing-file-404"),
    ],
)
def test_fetch_verifies_the_checksum(
    server: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: bytes | None,
    sha_ok: bool,
    code: int,
    message: str,
) -> None:
    url, root = server
    if served is not None:
        (root / "llm.csv").write_bytes(served)
    ds = Dataset(
        "t-llm",
        "gpu",
        "test",
        "CC-BY-4.0",
        (DataFile(f"{url}/llm.csv", "llm.csv", hashlib.sha256(LLM).hexdigest(), None, "azure-llm-2023"),),
    )
    _with_dataset(monkeypatch, ds)
    dest = tmp_path / "dest"
    out = io.StringIO()
    assert data_command(_parse("fetch", "t-llm", "--dest", str(dest)), out) == code
    assert message in out.getvalue()
    files = sorted(p.name for p in dest.iterdir()) if dest.exists() else []
    assert files == (["llm.csv"] if code == 0 else [])  # no partial file left behind


def test_fetch_without_checksum_checks_the_format(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    (root / "trace.csv.gz").write_bytes(b"not gzip at all")
    ds = Dataset(
        "t-gz", "cpu", "test", "x", (DataFile("https://example.invalid/x.gz", "trace.csv.gz", format="gzip"),)
    )
    _with_dataset(monkeypatch, ds)
    out = io.StringIO()
    rc = data_command(
        _parse("fetch", "t-gz", "--dest", str(tmp_path / "d"), "--url", f"{url}/trace.csv.gz"), out
    )
    assert rc == 1 and "not a gzip file" in out.getvalue()


def test_fetch_real_sample_through_a_mirror(server: tuple[str, Path], tmp_path: Path, data_dir: Path) -> None:
    url, root = server
    for name in ("azure2021_invocations_sample199.csv",):
        (root / name).write_bytes((data_dir / "azure-functions" / name).read_bytes())
    out = io.StringIO()
    rc = data_command(
        _parse("fetch", "azure-functions-2021-sample", "--dest", str(tmp_path / "d"), "--url", url + "/"), out
    )
    assert rc == 0, out.getvalue()
    assert (tmp_path / "d" / "azure2021_invocations_sample199.csv").exists()


def test_unknown_dataset_lists_the_known(tmp_path: Path) -> None:
    out = io.StringIO()
    assert data_command(_parse("fetch", "nope", "--dest", str(tmp_path)), out) == 1
    assert "known: azure-llm-2023-code" in out.getvalue()


def test_dataclass_replace_keeps_checksums_real() -> None:
    # every published checksum is 64 hex digits; datasets without one say so
    for d in datasets.DATASETS:
        for f in d.files:
            assert f.sha256 is None or (len(f.sha256) == 64 and int(f.sha256, 16) >= 0)
            assert replace(f).url.startswith("https://")
