"""A finished run as one offline W&B run, written from its run record, and the reader that checks it.

Why not a live offline WandbLogger: each attempt of a preempted or killed run would leave its own
``offline-run-*`` directory (a killed one with no run record), and ``wandb sync`` cannot merge
offline runs of the same id (wandb/wandb#3841), so the synced run would be partial or duplicated.
Instead the run's durable record (the metrics CSVs of every attempt, merged as the report reads
them, the config and ``result.json``) is exported once, when the run has finished, with the wandb
SDK in offline mode. The export is staged in a hidden directory and renamed into ``wandb/`` only
after ``finish()``, so an interrupted export leaves nothing that ``wandb sync`` would upload.

The ``.wandb`` file is wandb's protobuf ``Record`` messages in leveldb-log framing: a 7-byte file
header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header
(CRC-32 of type byte + data, length, type FULL/FIRST/MIDDLE/LAST). wandb 0.31 ships no Python
reader (its writer is wandb-core, in Go), so :func:`read_records` is here."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.run_record import RunDir, RunResult, read_metrics

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK, CHUNK_HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
EXIT_CODES = {"completed": 0, "diverged": 3, "failed": 1}  # as `convbench train` exits
STAGING = ".wandb-export"


def read_records(path: Path) -> list[Any]:
    """Every Record in a ``.wandb`` file. A torn last chunk (the writer was killed) ends the list;
    a bad header or checksum is a ValueError naming the file and byte."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = Path(path).read_bytes()
    if data[: len(FILE_HEADER)] != FILE_HEADER:
        raise ValueError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    records, pending, pos = [], b"", len(FILE_HEADER)
    while True:
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # a block's tail too short for a header is zero padding
            pos += left
        if pos + CHUNK_HEADER > len(data):
            break
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        body = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        if (crc, length, kind) == (0, 0, 0) or len(body) < length:
            break  # preallocated zeros or a torn write at the end
        if kind not in (FULL, FIRST, MIDDLE, LAST) or zlib.crc32(body, zlib.crc32(bytes([kind]))) != crc:
            raise ValueError(f"{path}: corrupt chunk at byte {pos} (type {kind}, checksum mismatch or unknown type)")
        pos += CHUNK_HEADER + length
        pending = body if kind in (FULL, FIRST) else pending + body
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@dataclass
class WandbFile:
    """What a ``.wandb`` file says: the run record, history rows by step, summary, exit."""

    run_id: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # top-level keys, values as logged
    exit_code: int | None = None

    @classmethod
    def read(cls, path: Path) -> WandbFile:
        out = cls()
        for r in read_records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                out.run_id = r.run.run_id
                out.config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
            elif kind == "history":
                out.history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item})
            elif kind == "summary":
                for i in r.summary.update:
                    out.summary["/".join(i.nested_key) or i.key] = json.loads(i.value_json)
                for i in r.summary.remove:
                    out.summary.pop("/".join(i.nested_key) or i.key, None)
            elif kind == "config":
                for i in r.config.update:
                    out.config["/".join(i.nested_key) or i.key] = json.loads(i.value_json)
            elif kind == "exit":
                out.exit_code = r.exit.exit_code
        return out


def offline_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / "wandb").glob("offline-run-*") if p.is_dir())


def wandb_file(offline_dir: Path) -> Path | None:
    files = sorted(offline_dir.glob("run-*.wandb"))
    return files[0] if files else None


def complete_export(run_dir: Path) -> Path | None:
    """The run's offline W&B directory if it holds the whole run: its id, and an exit record
    (written by ``finish()``, so after the history and summary); else None."""
    id_file = run_dir / "wandb_id"
    if not id_file.is_file():
        return None
    wandb_id = id_file.read_text().strip()
    for d in offline_dirs(run_dir):
        f = wandb_file(d)
        if f is None or not d.name.endswith("-" + wandb_id):
            continue
        try:
            w = WandbFile.read(f)
        except (OSError, ValueError):
            continue
        if w.run_id == wandb_id and w.exit_code is not None:
            return d
    return None


def synced(offline_dir: Path) -> bool:
    """``wandb sync`` marks an uploaded run with ``run-<id>.wandb.synced``."""
    f = wandb_file(offline_dir)
    return f is not None and f.with_name(f.name + ".synced").is_file()


def history_rows(run_dir: Path) -> Iterator[tuple[int, dict[str, float]]]:
    """(global step, metrics) of every logged step once, all attempts merged (a resumed attempt
    replaces the earlier ones' rows from its first step on); rows of one step are combined."""
    by_step: dict[int, dict[str, float]] = {}
    for row in read_metrics(run_dir):
        metrics = {k: v for k, v in row.items() if k != "step" and v is not None}
        by_step.setdefault(int(row["step"]), {}).update(metrics)
    for step in sorted(by_step):
        yield step, by_step[step]


def summary_of(result: dict[str, Any]) -> dict[str, Any]:
    """result.json's scalars (numbers, strings, booleans): the run's final numbers in W&B."""
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str))}


def require_written(offline_dir: Path, wandb_id: str) -> Path:
    """``offline_dir`` once its run is complete on disk (:func:`wait_written`), else a RuntimeError."""
    why = wait_written(offline_dir, wandb_id)
    if why is not None:
        raise RuntimeError(f"W&B wrote no complete run to {offline_dir} ({why})")
    return offline_dir


def wait_written(offline_dir: Path, wandb_id: str, timeout: float = 60) -> str | None:
    """Wait until the run's ``.wandb`` file holds its exit record; None when it does, else what is
    missing. In offline mode ``finish()`` returns before wandb-core has written the file's tail
    (seen with 0.31: a 600-step run's last 30 KB arrived after it returned)."""
    deadline = time.monotonic() + timeout
    while True:
        f = wandb_file(offline_dir)
        try:
            w = WandbFile.read(f) if f is not None else None
        except (OSError, ValueError):
            w = None
        if w is not None and w.run_id == wandb_id and w.exit_code is not None:
            return None
        if time.monotonic() > deadline:
            return "no .wandb file" if f is None else "no exit record"
        time.sleep(0.05)


def export(run_dir: Path) -> Path:
    """Write the finished run in ``run_dir`` as one offline W&B run under ``run_dir/wandb/``;
    returns its directory. Any earlier offline directory of the run (an interrupted export) is replaced."""
    import wandb

    record = RunDir(Path(run_dir))
    if not record.result_path.is_file():
        raise ValueError(f"{run_dir}: no result.json: only a finished run is exported")
    RunResult.read(record.result_path)  # a malformed record is a one-line error naming the file
    result = json.loads(record.result_path.read_text())  # the summary is the file's own values
    config = result.get("config") or {}
    w = config.get("wandb") or {}
    wandb_id = record.wandb_id(secrets.token_hex(4))
    staging = record.path / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    settings = wandb.Settings(
        silent=True,
        console="off",
        x_disable_stats=True,
        x_disable_meta=True,
        x_disable_machine_info=True,
        disable_git=True,
        save_code=False,
        x_save_requirements=False,
    )
    run = wandb.init(
        mode="offline",
        id=wandb_id,
        dir=str(staging),
        project=w.get("project") or "convbench",
        entity=w.get("entity"),
        group=w.get("group"),
        tags=list(w.get("tags") or ()),
        name=record.path.name,
        job_type="train",
        config={**config, "hardware": result.get("hardware")},  # filterable: hardware.label, hardware.hosts
        reinit="create_new",
        settings=settings,
    )
    try:
        run.define_metric("trainer/global_step")
        run.define_metric(
            "*", step_metric="trainer/global_step", step_sync=True
        )  # as Lightning's WandbLogger does online
        for step, metrics in history_rows(record.path):
            run.log({**metrics, "trainer/global_step": step}, step=step)
        run.summary.update(summary_of(result))
        source = Path(run.dir).parent  # <staging>/wandb/offline-run-<time>-<id>/files -> the offline run
    except BaseException:
        run.finish(exit_code=1)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    run.finish(exit_code=EXIT_CODES.get(result.get("status"), 1))
    written = wait_written(source, wandb_id)
    if written is not None:
        shutil.rmtree(staging, ignore_errors=True)
        raise TimeoutError(f"wandb wrote no complete run to {source} ({written})")
    for old in offline_dirs(record.path):
        shutil.rmtree(old)
    target = record.path / "wandb" / source.name
    target.parent.mkdir(exist_ok=True)
    os.replace(source, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target
