"""--shard K/N (§2.1, §5): shards are disjoint and cover the input, all of a host's URLs fall in
one shard, the split is the same in every process whatever PYTHONHASHSEED says, and N separate
processes together write the records of exactly one unsharded run."""

import io
import json
import subprocess
import sys
from collections import Counter

import pytest

from fetcher.input.reader import InputReader, Source
from fetcher.input.shards import Shard, shard_key, shard_of
from tests.conftest import clean_env, invoke
from tests.servers import closed_port

N = 4


def shard_jobs(data: bytes, shard: Shard | None, input_format: str = "lines", **options):
    source = Source("test", stream=io.BytesIO(data))
    reader = InputReader([source], "https", input_format=input_format, shard=shard, **options)
    return list(reader), reader


def mixed_list(port: int, refused: int) -> bytes:
    """A few hundred lines over many hosts: served, refused, unsupported schemes on named hosts
    (invalid, but with a host), and lines without any host; no host needs DNS."""
    lines = [f"http://127.0.0.1:{port}/page/{i}" for i in range(40)]
    lines += [f"http://127.0.0.{2 + i % 60}:{refused}/r/{i}" for i in range(160)]
    lines += [f"ftp://Host-{i % 50}.test/f/{i}" for i in range(100)]
    lines += ["http://", "https:///nohost", "http://[::1", "# a comment", ""]
    data = "\n".join(lines).encode() + b"\n\xff\xfe not utf-8\n" + b"x" * 9000 + b"\n"
    return data


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shard"), [("0/1", (0, 1)), ("3/4", (3, 4)), (" 1 / 2 ", (1, 2))])
def test_shard_parses(text, shard):
    parsed = Shard.parse(text)
    assert (parsed.index, parsed.count) == shard and str(parsed) == f"{shard[0]}/{shard[1]}"


@pytest.mark.parametrize("text", ["4/4", "5/4", "-1/4", "1/0", "0/0", "a/b", "1", "1/4/2", ""])
def test_malformed_shard_is_a_usage_error(text):
    with pytest.raises(ValueError, match="not a shard"):
        Shard.parse(text)
    result = invoke(["--shard", text, "ftp://x.test/"])
    assert result.exit_code == 2 and "--shard" in result.stderr
    if text:  # click reads an empty variable as unset
        result = invoke(["ftp://x.test/"], FETCHER_SHARD=text)
        assert result.exit_code == 2 and "FETCHER_SHARD" in result.stderr


def test_the_hash_is_pinned():
    """The split must never change between versions: machines on different releases must agree."""
    assert [shard_of(b"example.com", n) for n in (2, 3, 4, 7, 16)] == [1, 1, 1, 5, 5]
    assert [shard_of(b"127.0.0.1", n) for n in (2, 3, 4, 7, 16)] == [0, 2, 0, 5, 4]


def test_shard_key_is_the_lower_cased_host_or_else_the_raw_line():
    assert shard_key("https://User:pw@EXAMPLE.com:8443/x?y", b"raw") == b"example.com"
    assert shard_key("ftp://Example.COM/", b"raw") == b"example.com"
    assert shard_key("http://", b"http://") == b"http://"
    assert shard_key("http://[::1", b"the line") == b"the line"


# -- splitting --------------------------------------------------------------------------------


def test_shards_are_disjoint_and_cover_the_input():
    data = mixed_list(8000, 9)
    everything, _ = shard_jobs(data, None)
    assert len(everything) > 300
    seen: Counter[int] = Counter()
    hosts_by_shard: dict[int, set[str]] = {}
    for index in range(N):
        jobs, reader = shard_jobs(data, Shard(index, N))
        assert jobs, index  # every shard gets some of this list
        assert [job.seq for job in jobs] == list(range(len(jobs)))  # --ordered relies on it
        assert reader.other_shards == len(everything) - len(jobs)
        seen.update(job.line for job in jobs)
        hosts_by_shard[index] = {shard_key(job.target, job.raw) for job in jobs}
    assert seen == Counter(job.line for job in everything)  # each line in exactly one shard
    for first in range(N):
        for second in range(first + 1, N):
            assert not hosts_by_shard[first] & hosts_by_shard[second]  # a host in one shard


def test_a_host_is_one_shard_whatever_its_case_port_or_scheme():
    data = b"http://Mixed.Test/a\nhttps://mixed.test:8443/b\nmixed.test/c\nftp://MIXED.test/d\n"
    counts = [len(shard_jobs(data, Shard(index, N))[0]) for index in range(N)]
    assert sorted(counts) == [0, 0, 0, 4]


def test_a_unicode_host_is_one_shard_with_its_punycode_spelling():
    """One server for every limit, the pause and the summary (requests connects to the IDNA
    name), but the shard hashed the Unicode text: `bücher.test` and `xn--bcher-kva.test` went
    to two copies (s19 t1 D1)."""
    assert shard_key("http://Bücher.test/a", b"") == b"xn--bcher-kva.test"
    data = "http://bücher.test/a\nhttp://xn--bcher-kva.test/b\nhttp://BÜCHER.test/c\n".encode()
    counts = [len(shard_jobs(data, Shard(index, n))[0]) for n in (2, 4, 7) for index in range(n)]
    assert sorted(counts, reverse=True)[:3] == [3, 3, 3] and sum(counts) == 9


def test_jsonl_and_csv_lines_are_sharded_by_their_url_host():
    objects = [{"url": f"http://127.0.0.{i}/x", "id": i} for i in range(1, 60)]
    objects += [{"url": 5, "id": 0}]  # malformed: by its raw line
    jsonl = "\n".join(json.dumps(o) for o in objects).encode() + b"\nnot json\n"
    csv = b"url,id\n" + b"".join(f"http://127.0.0.{i}/x,{i}\n".encode() for i in range(1, 60))
    for data, input_format in ((jsonl, "jsonl"), (csv, "csv")):
        everything, _ = shard_jobs(data, None, input_format)
        union: Counter[int] = Counter()
        for index in range(N):
            jobs, _ = shard_jobs(data, Shard(index, N), input_format)
            union.update(job.line for job in jobs)
            for job in jobs:
                key = shard_key(job.target, job.raw)
                assert shard_of(key, N) == index
        assert union == Counter(job.line for job in everything)


def test_unique_counts_repeats_within_the_shard_only():
    data = b"".join(f"http://127.0.0.{i % 20}/\n".encode() for i in range(100))
    totals = [shard_jobs(data, Shard(index, N), unique=True)[1] for index in range(N)]
    assert sum(reader.count for reader in totals) == 20
    assert sum(reader.duplicates for reader in totals) == 80
    assert all(r.other_shards + r.count + r.duplicates == 100 for r in totals)


def test_ordered_shard_run_and_its_summary(tmp_path):
    """No network: unsupported schemes are invalid records, still sharded by host."""
    data = b"".join(f"ftp://host-{i}.test/\n".encode() for i in range(200))
    expected, _ = shard_jobs(data, Shard(2, N))
    summary = tmp_path / "summary.json"
    result = invoke(
        ["--shard", "2/4", "--ordered", "--format", "jsonl", "--summary", str(summary)],
        input=data,
    )
    lines = [json.loads(line)["line"] for line in result.stdout.splitlines()]
    assert lines == [job.line for job in expected] and lines == sorted(lines)
    other = 200 - len(lines)
    assert f"left to other shards: {other}" in result.stderr
    assert json.loads(summary.read_text())["other_shards"] == other


# -- separate processes ----------------------------------------------------------------------


def start(args: list[str], **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fetcher", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(**env),
    )


def finish(process: subprocess.Popen[bytes]) -> list[dict]:
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode in (0, 1, 3), stderr.decode()
    return [json.loads(line) for line in stdout.decode().splitlines()]


def outcome(record: dict) -> tuple:
    return record["line"], record["url"], record["status"], (record["error"] or {}).get("kind")


def test_shards_agree_whatever_the_hash_seed(server, tmp_path):
    listing = tmp_path / "urls.txt"
    listing.write_bytes(mixed_list(server.port, closed_port()))
    args = ["--shard", "1/4", "--format", "jsonl", "--retries", "0", "-q", "-i", str(listing)]
    processes = [start(args, PYTHONHASHSEED=seed) for seed in ("0", "12345")]
    first, second = (finish(process) for process in processes)
    expected, _ = shard_jobs(listing.read_bytes(), Shard(1, N))
    assert {r["line"] for r in first} == {job.line for job in expected}
    assert sorted(map(outcome, first)) == sorted(map(outcome, second))


def test_four_shard_processes_write_the_records_of_one_unsharded_run(server, tmp_path):
    listing = tmp_path / "urls.txt"
    listing.write_bytes(mixed_list(server.port, closed_port()))
    common = ["--format", "jsonl", "--retries", "0", "-q", "-i", str(listing)]
    summaries = [tmp_path / f"summary-{index}.json" for index in range(N)]
    shards = [
        start([*common, "--shard", f"{index}/{N}", "--summary", str(summaries[index])])
        for index in range(N)
    ]
    whole = start(common)
    shard_records = [finish(process) for process in shards]
    unsharded = finish(whole)
    assert all(shard_records)
    concatenated = [record for records in shard_records for record in records]
    assert Counter(map(outcome, concatenated)) == Counter(map(outcome, unsharded))
    assert len({r["line"] for r in concatenated}) == len(concatenated)  # each line once
    assert any(r["ok"] for r in concatenated) and any(not r["ok"] for r in concatenated)
    for records, path in zip(shard_records, summaries, strict=True):
        summary = json.loads(path.read_text())
        assert summary["total"] == len(records)
        assert summary["other_shards"] == len(unsharded) - len(records)


@pytest.mark.parametrize(
    ("spellings", "server"),
    [
        (["127.0.0.1", "127.1", "2130706433", "0x7f.1", "0177.0.0.1", "[::ffff:127.0.0.1]"],
         "127.0.0.1"),
        (["[::1]", "[0:0::1]", "[0000:0000:0000:0000:0000:0000:0000:0001]"], "[::1]"),
        (["example.org", "EXAMPLE.org.", "example.org."], "example.org"),
        (["1e100.de", "1e100.de."], "1e100.de"),
    ],
    ids=["ipv4", "ipv6", "trailing-dot", "hex-letters"],
)  # fmt: skip
def test_one_server_spelled_several_ways_is_one_host_and_one_shard(spellings, server):
    """usage.md: all URLs of one host fall in one shard, whatever their spelling; an IP
    literal's other forms and a name's trailing dot were other hosts for the shards, the
    per-host limits and the pause (s25 h2 3). Names that only look numeric stay names."""
    from fetcher.results import host_of

    assert {shard_key(f"http://{host}/x", b"") for host in spellings} == {
        server.strip("[]").encode()
    }
    assert {host_of(f"http://{host}:81/x") for host in spellings} == {f"{server}:81"}
    for refused in ("127.0.0.1.", "127.1.", "localhost."):  # the resolver refuses the dot
        assert host_of(f"http://{refused}/") == f"{refused}:80", refused
    assert host_of("http://12.bad/") == "12.bad:80" and host_of("http://1e100.net/") == (
        "1e100.net:80"
    )


# -- --failed naming the input (s25 h3 2) ------------------------------------------------------


def shard_list(server, refused: int, csv: bool) -> tuple[list[str], str]:
    """Lines over 8 hosts, none needing DNS: one served ok (127.0.0.1, shard 0 of 2), the
    others refused; and the one that ends ok."""
    ok = server.url("/ok")
    urls = [ok] + [f"http://127.0.0.{n}:{refused}/x" for n in range(2, 9)]
    return ([f"{url},tag-{n}" for n, url in enumerate(urls)] if csv else urls), ok


@pytest.mark.parametrize("through", ["name", "link", "chain"])
@pytest.mark.parametrize("csv", [False, True], ids=["lines", "csv"])
def test_failed_naming_the_input_keeps_the_other_shards_lines(server, tmp_path, csv, through):
    """`--shard K/N -i LIST --failed LIST`, the documented retry loop run once per shard: each
    shard's run leaves the other shards' lines in LIST (they were read, not this run's to
    judge); only its own lines that ended ok leave it. LIST lost them: the second shard then
    emptied it, exit 0, 6 URLs never fetched. LIST a link that --failed replaces, read through
    that link, is the same loop (s25 r6 1: the link and its target were not matched), and so
    is LIST read through a link to that link (s25 r7 3: `-i l2 --failed l1`, l2 -> l1 ->
    list, kept only this shard's lines: the links in between were not looked at)."""
    rows, ok = shard_list(server, closed_port(), csv)
    listing = tmp_path / "list.txt"
    header = ["url,tag"] if csv else []
    listing.write_text("\n".join([*header, *rows]) + "\n")
    source = replaced = listing
    if through != "name":
        (tmp_path / "l1").symlink_to(listing)
        source = replaced = tmp_path / "l1"
    if through == "chain":
        (tmp_path / "l2").symlink_to("l1")
        source = tmp_path / "l2"
    listing = source
    options = ["--input-format", "csv"] if csv else []
    statuses = []
    for index in range(2):
        result = invoke(["-q", "--retries", "0", "--shard", f"{index}/2", *options,
                         "-i", str(source), "--failed", str(replaced)])  # fmt: skip
        statuses.append(result.exit_code)
    assert statuses == [1, 3], statuses  # shard 0 has the ok URL; shard 1 only refused ones
    kept = listing.read_text().splitlines()
    assert kept[: len(header)] == header
    failed = [row for row in rows if not row.startswith(ok)]
    assert Counter(kept[len(header) :]) == Counter(failed)
    assert server.paths == ["/ok"]
    again = invoke(["-q", "--retries", "0", "--shard", "1/2", *options, "-i", str(listing)])
    assert again.exit_code == 3  # the list still holds shard 1's lines for a next round


def test_failed_naming_another_file_gets_this_shard_s_lines_only(server, tmp_path):
    rows, _ = shard_list(server, closed_port(), False)
    listing, failed = tmp_path / "list.txt", tmp_path / "failed.txt"
    listing.write_text("\n".join(rows) + "\n")
    result = invoke(["-q", "--retries", "0", "--shard", "1/2", "-i", str(listing),
                     "--failed", str(failed), "--format", "jsonl"])  # fmt: skip
    fetched = [json.loads(line)["url"] for line in result.stdout.splitlines()]
    assert sorted(failed.read_text().splitlines()) == sorted(fetched) and len(fetched) < 8
