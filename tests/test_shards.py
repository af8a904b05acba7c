"""Shard tars: byte-for-byte what webdataset writes and reads, committed whole."""

from __future__ import annotations

import hashlib
import io
import os

import webdataset as wds

from pipeline.shards import TAR_MODE, TAR_OWNER, Output, ShardWriter, file_sha256, read_tar_samples


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
