"""The bundle format without an engine: members round-trip with their checksums, a
damaged, cut or re-ordered bundle is refused, credentials never travel."""

from __future__ import annotations

import io
import tarfile

import pytest
import zstandard

from labctl.bundle import format as fmt
from labctl.bundle.transfer import strip_credentials
from labctl.errors import LabError

HEAD = fmt.Head(labctl="0.1.0", created="2026-12-01T00:00:00Z", images=[],
                lab_files=["images/a.yaml"])


def bundle(extra: list[tuple[str, bytes]] | None = None, head: bool = True) -> bytes:
    out = io.BytesIO()
    w = fmt.Writer(out, threads=0)
    if head:
        w.head(HEAD)
    w.add_bytes("lab/images/a.yaml", b"pip: [six]\n")
    w.add_dir("docker/abc")
    big = b"layer" * 300_000  # 1.5 MB: more than one chunk
    w.add("docker/abc/layer.tar", [big[:1 << 20], big[1 << 20:]], len(big))
    w.add_link("docker/def/layer.tar", "../abc/layer.tar")
    for name, data in extra or []:
        w.add_bytes(name, data)
    w.close(HEAD, {"abc/layer.tar": "sha256:x"}, {})
    return out.getvalue()


def plain(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def test_round_trip_with_checksums() -> None:
    m = fmt.verify(io.BytesIO(bundle()))
    assert m.lab_files == ["images/a.yaml"]
    assert set(m.members) == {fmt.HEAD, "lab/images/a.yaml", "docker/abc/layer.tar",
                              "docker/def/layer.tar"}
    assert m.members["docker/def/layer.tar"].link == "../abc/layer.tar"
    assert m.docker_bytes() == 1_500_000


def test_the_docker_members_come_back_as_a_tar_the_engine_reads() -> None:
    reader = fmt.Reader(io.BytesIO(bundle()))
    parts = []
    for info, data in reader.members():
        if info.name == fmt.HEAD:
            reader.read_head(info, data)
        elif info.name.startswith("docker/"):
            parts.extend(fmt.docker_member(info, data))
    reader.check()
    with tarfile.open(fileobj=io.BytesIO(b"".join(parts) + fmt.END)) as tar:
        names = {m.name: m for m in tar.getmembers()}
        assert set(names) == {"abc", "abc/layer.tar", "def/layer.tar"}
        assert names["def/layer.tar"].issym()
        assert tar.extractfile("abc/layer.tar").read() == b"layer" * 300_000


def test_the_refusal_is_no_tar_header() -> None:
    with pytest.raises(tarfile.TarError), tarfile.open(
            fileobj=io.BytesIO(fmt.REFUSE + fmt.END)) as tar:
        tar.getmembers()


def test_a_bundle_without_its_head_is_refused() -> None:
    with pytest.raises(LabError, match="not with its head"):
        fmt.verify(io.BytesIO(bundle(head=False)))


@pytest.mark.parametrize("keep", [0.5, 0.9, -1])
def test_a_cut_bundle_is_refused(keep: float) -> None:
    data = bundle()
    end = len(data) - 1 if keep == -1 else int(len(data) * keep)  # -1: only the last byte
    with pytest.raises(LabError, match="damaged or incomplete"):
        fmt.verify(io.BytesIO(data[:end]))


def test_a_flipped_byte_is_refused() -> None:
    data = bytearray(bundle())
    data[len(data) // 2] ^= 0x01
    with pytest.raises(LabError, match="damaged or incomplete"):
        fmt.verify(io.BytesIO(bytes(data)))


def test_a_member_changed_behind_the_compression_is_refused() -> None:
    """Recompressed after an edit: zstd's own checksum holds, the manifest's does not."""
    raw = plain(bundle())
    edited = raw.replace(b"pip: [six]", b"pip: [sax]")
    assert edited != raw
    again = zstandard.ZstdCompressor().compress(edited)
    with pytest.raises(LabError, match="differ from the manifest: lab/images/a.yaml"):
        fmt.verify(io.BytesIO(again))


def test_a_member_after_the_manifest_is_refused() -> None:
    raw = plain(bundle())
    end = raw.rstrip(b"\0")
    end += b"\0" * (-len(end) % 512)
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w") as tar:
        info = tarfile.TarInfo("lab/late.yaml")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(LabError, match="after the manifest"):
        fmt.verify(io.BytesIO(zstandard.ZstdCompressor().compress(end + extra.getvalue())))


def test_layers_in_both_save_formats() -> None:
    diff = "sha256:" + "a" * 64
    assert fmt.is_layer("0123/layer.tar", set())
    assert fmt.is_layer("blobs/sha256/" + "a" * 64, {diff})
    assert not fmt.is_layer("blobs/sha256/" + "b" * 64, {diff})  # a config or manifest
    assert not fmt.is_layer("manifest.json", {diff})


@pytest.mark.parametrize(("text", "want"), [
    ("index_url: https://me:tok@pypi.example/simple  # mine\n",
     "index_url: https://pypi.example/simple  # mine\n"),
    ("proxy: {https: 'http://u:p@proxy:3128'}\n", "proxy: {https: 'http://proxy:3128'}\n"),
    ("to: https://mirror.example/d2l/\n", "to: https://mirror.example/d2l/\n"),
])
def test_credentials_are_stripped_from_settings(text: str, want: str) -> None:
    assert strip_credentials(text) == want
