"""Shard tars: byte-for-byte what webdataset writes and reads, committed whole."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re

import pytest
import webdataset as wds

from pipeline.shards import (
    TAR_MODE,
    TAR_OWNER,
    Output,
    RunRecord,
    ShardWriter,
    file_sha256,
    output_samples,
    read_tar_samples,
)


def samples() -> list[tuple[str, dict[str, bytes]]]:
    big = os.urandom(5 << 20)  # larger than the copy buffer, so it moves in several pieces
    return [
        ("corpus-000001", {"json": b'{"text": "\xe3\x81\x82"}', "flac": os.urandom(1234)}),
        ("corpus-000002", {"flac": big, "json": b"{}", "txt": b""}),
        ("corpus-000003", {"json": os.urandom(511), "flac": os.urandom(512)}),
    ]


def test_shards_are_byte_identical_to_webdatasets_tar_writer(tmp_path):
    output = Output(tmp_path / "out")
    output.prepare()
    samples_list = samples()
    writer = ShardWriter(output, "shard-000000")
    for key, members in samples_list:
        writer.write(key, members)
    size, sha256 = writer.commit()

    reference = io.BytesIO()
    tar = wds.TarWriter(reference, user=TAR_OWNER, group=TAR_OWNER, mode=TAR_MODE, mtime=0)
    for key, members in samples_list:
        tar.write({"__key__": key, **members})
    tar.close()

    written = output.tar_path("shard-000000").read_bytes()
    assert written == reference.getvalue()
    assert (size, sha256) == (len(written), hashlib.sha256(written).hexdigest())
    assert sha256 == file_sha256(output.tar_path("shard-000000"))
    assert [sample["__key__"] for sample in read_tar_samples(output.tar_path("shard-000000"))] == [
        k for k, _ in samples_list
    ]


def test_an_aborted_shard_leaves_nothing_visible(tmp_path):
    output = Output(tmp_path / "out")
    output.prepare()
    writer = ShardWriter(output, "shard-000000")
    writer.write("corpus-000001", {"json": b"{}"})
    writer.abort()
    assert list(output.shards_dir.iterdir()) == []


def _written_output(tmp_path, broken_json: bool = False) -> Output:
    output = Output(tmp_path / "out")
    output.prepare()
    for shard, keys in (("s-000000", ["a-1", "a-2"]), ("s-000001", ["a-3"])):
        writer = ShardWriter(output, shard)
        for key in keys:
            document = b"{not json" if broken_json and key == "a-2" else json.dumps({"key": key}).encode()
            writer.write(key, {"flac": f"audio of {key}".encode(), "json": document})
        writer.commit()
    return output


def test_the_output_reader_gives_every_sample_in_shard_order_with_audio_on_demand(tmp_path):
    output = _written_output(tmp_path)
    plain = list(output_samples(output.root))
    assert [(s.shard, s.key, s.document["key"]) for s in plain] == [
        ("s-000000", "a-1", "a-1"),
        ("s-000000", "a-2", "a-2"),
        ("s-000001", "a-3", "a-3"),
    ]
    assert {s.read_flac() for s in plain} == {b""}  # JSON-only: the audio is not read
    with_audio = output_samples(output.root, with_audio=True)
    assert [s.read_flac() for s in with_audio] == [b"audio of a-1", b"audio of a-2", b"audio of a-3"]


def test_the_output_reader_names_a_broken_json_or_passes_it_over(tmp_path):
    output = _written_output(tmp_path, broken_json=True)
    with pytest.raises(ValueError, match=r"s-000000.tar: a-2.json does not parse"):
        list(output_samples(output.root))
    assert [s.key for s in output_samples(output.root, errors="skip")] == ["a-1", "a-3"]


def test_a_run_record_reads_what_it_writes_and_names_what_is_wrong(tmp_path):
    path = tmp_path / "run.json"
    RunRecord("abc", "running").write(path)
    assert json.loads(path.read_text()) == {"recipe_fingerprint": "abc", "state": "running"}
    finished = RunRecord("abc", "complete", "0.1", {"kind": "sft"}, {"inputs": 1}, [])
    finished.write(path)
    assert RunRecord.read(path) == finished and list(json.loads(path.read_text()))[-1] == "shards_failed"
    for text, why in [
        ('{"recipe_fingerprint": "abc", "state": "done"}', "state 'done' is none of running, complete"),
        ('{"recipe_fingerprint": "abc", "state": "running", "extra": 1}', "unexpected keyword argument 'extra'"),
        ('{"recipe_fingerprint": "abc", "state": "complete"}', "a complete run record lacks its recipe"),
        ("[1, 2]", "a JSON list, not an object"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=f"{path.name}: unreadable run record .*{re.escape(why)}"):
            RunRecord.read(path)
