"""The bundle format without an engine: members round-trip with their checksums, a
damaged, cut or re-ordered bundle is refused, credentials never travel."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
import zstandard
from conftest import tar_bytes

from labctl.bundle import format as fmt
from labctl.bundle.transfer import strip_credentials
from labctl.errors import LabError

HEAD = fmt.Head(labctl="0.1.0", created="2026-12-01T00:00:00Z", images=[],
                lab_files=["images/a.yaml"])
BIG = b"layer" * 300_000  # 1.5 MB: more than one chunk
LAYERS = {"abc/layer.tar": "sha256:" + hashlib.sha256(BIG).hexdigest()}


def bundle(extra: list[tuple[str, bytes]] | None = None, head: bool = True,
           layers: dict[str, str] = LAYERS) -> bytes:
    out = io.BytesIO()
    w = fmt.Writer(out, threads=0)
    if head:
        w.head(HEAD)
    w.add_bytes("lab/images/a.yaml", b"pip: [six]\n")
    w.add_dir("docker/abc")
    w.add("docker/abc/layer.tar", [BIG[:1 << 20], BIG[1 << 20:]], len(BIG))
    w.add_link("docker/def/layer.tar", "../abc/layer.tar")
    for name, data in extra or []:
        w.add_bytes(name, data)
    w.close(HEAD, layers, {})
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


def test_the_layer_index_follows_the_frame_where_zstd_tools_pass_over_it() -> None:
    data = bundle()
    assert fmt.read_index(io.BytesIO(data)) == LAYERS
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                    read_across_frames=True) as r:
        assert r.read() == plain(data)  # the skippable frame adds no byte
    assert fmt.verify(io.BytesIO(data)).layers == LAYERS


def test_a_bundle_without_a_layer_index_still_loads() -> None:
    """As an earlier labctl wrote them: the frame and nothing after it."""
    data = bundle()
    bare = data[:-len(fmt.index_frame(LAYERS))]
    assert fmt.read_index(io.BytesIO(bare)) is None
    assert fmt.Reader(io.BytesIO(bare)).index is None
    fmt.verify(io.BytesIO(bare))


@pytest.mark.parametrize(("index", "why"), [
    ({"abc/layer.tar": "sha256:" + "0" * 64}, "layer index and its manifest disagree"),
    ({}, "layer index and its manifest disagree"),
])
def test_a_layer_index_other_than_the_manifest_is_refused(index: dict, why: str) -> None:
    """A load leaves out what the index names: one that lies is caught before the end."""
    data = bundle()
    data = data[:-len(fmt.index_frame(LAYERS))] + fmt.index_frame(index)
    with pytest.raises(LabError, match=why):
        fmt.verify(io.BytesIO(data))


def test_a_layer_whose_diff_id_is_not_its_checksum_is_refused() -> None:
    """Index and manifest agree, but name another layer: what a load would leave out
    must be what the bundle holds."""
    with pytest.raises(LabError, match="are not their checksums"):
        fmt.verify(io.BytesIO(bundle(layers={"abc/layer.tar": "sha256:" + "0" * 64})))


def test_bytes_after_the_layer_index_are_refused() -> None:
    with pytest.raises(LabError, match="data after the end"):
        fmt.verify(io.BytesIO(bundle() + b"\0" * 16))


def _img(name: str, diffs: list[str]) -> fmt.BundleImage:
    return fmt.BundleImage(name=name, tag=f"{name}:latest", id="sha256:" + name, hash=None,
                           diff_ids=diffs, size=1)


def test_a_layer_is_left_out_only_where_no_image_lacks_it() -> None:
    from labctl.bundle.transfer import _layers_here
    from labctl.chains import chain_ids

    head = HEAD.model_copy(update={"images": [_img("a", ["d1", "d2", "d3"]),
                                              _img("b", ["d1", "d2", "d4"]),
                                              _img("c", ["d5", "d2"])]})
    index = {"1/layer.tar": "d1", "2/layer.tar": "d2", "3/layer.tar": "d3",
             "4/layer.tar": "d4", "5/layer.tar": "d5"}
    have = set(chain_ids(["d1", "d2"]))
    # c has d2 above another layer, which this engine lacks: d2's file must go
    assert _layers_here(head, index, have) == {"1/layer.tar"}
    have |= set(chain_ids(["d5", "d2"]))
    assert _layers_here(head, index, have) == {"1/layer.tar", "2/layer.tar", "5/layer.tar"}
    assert _layers_here(head, None, have) == set()
    assert _layers_here(head, index, set()) == set()


def _tar(fmt_: int) -> bytes:
    return tar_bytes([("short", b"x" * 700), ("d/" + "long-name-" * 12, b"y" * 513),
                      ("é-ünïcode", b""), ("z", b"z" * 5000)], [("ln", "short")], fmt_)


@pytest.mark.parametrize("fmt_", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("size", [7, 512, 1000, 1 << 20])
def test_walk_reads_what_tarfile_reads(fmt_: int, size: int) -> None:
    """Both formats' extension headers (a long name, a non-ASCII one), in chunks that cut
    headers and data anywhere; data left unread is skipped."""
    data = _tar(fmt_)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        want = [(m.name, m.type, m.linkname, tar.extractfile(m).read() if m.isfile() else b"")
                for m in tar.getmembers()]
    want[0] = (*want[0][:3], b"")  # the first is left unread
    chunks = (data[i:i + size] for i in range(0, len(data), size))
    got = [(info.name, info.type, info.linkname, b"".join(part) if i else b"")
           for i, (info, part) in enumerate(fmt.walk(chunks))]
    assert got == want and len(got) == 5


def test_walk_refuses_a_broken_header_and_a_cut_stream() -> None:
    data = _tar(tarfile.PAX_FORMAT)
    with pytest.raises(tarfile.ReadError):
        list(fmt.walk([data[:100] + b"\xff" * 412 + data[512:]]))
    with pytest.raises(tarfile.ReadError):
        for _, part in fmt.walk([data[:1000]]):
            b"".join(part)
