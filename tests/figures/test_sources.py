"""Europe PMC source: search, download, cache, resume, politeness, untrusted responses.

No test touches the network: a fake transport replays the hand-built responses in
data/europepmc/ (formats of the Europe PMC REST API: search JSON with cursorMark paging,
fullTextXML JATS) and serves images generated here.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emdig import __version__
from emdig.errors import CorruptFile, EmdigError, FetchError, TooLarge
from emdig.figures.sources import (
    EuropePMC,
    Response,
    UrllibTransport,
    default_user_agent,
    read_capped,
)

DATA = Path(__file__).parent / "data" / "europepmc"
REST = "https://www.ebi.ac.uk/europepmc/webservices/rest"
QUERY = '"HAADF-STEM" nanoparticles'
CURSOR_FILES = {
    "*": "search_page1.json",
    "AoIIP4AAACgxMzUwMDAwMDM=": "search_page2.json",
    "AoIIP4AAACgxMzUwMDAwMDU=": "search_page3.json",
}


class Killed(BaseException):
    """Stands for the process being killed: nothing in the library may catch it."""


def _image(fmt: str, seed: int, shape: tuple[int, int] = (24, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _bin(pmcid: str, name: str) -> str:
    return f"https://europepmc.org/articles/{pmcid}/bin/{name}"


IMAGES = {
    _bin("PMC9000001", "nanomaterials-12-00101-g001.jpg"): _image("JPEG", 1),
    _bin("PMC9000001", "nanomaterials-12-00101-g002.jpg"): _image("PNG", 2),
    _bin("PMC9000001", "nanomaterials-12-00101-g003.jpg"): _image("TIFF", 3),
    _bin("PMC9000002", "ijms-22-00002-g002.jpg"): b"<!DOCTYPE html><html><body>Not found</body>",
    _bin("PMC9000002", "ijms-22-00002-g004.jpg"): _image("GIF", 4),
    _bin("PMC9000003", "ultra-3-0003-g001.jpg"): _image("JPEG", 5),
}
# what a complete run saves: folder/file -> the bytes served
EXPECTED_FILES = {
    "PMC9000001/nanomaterials-12-00101-g001.jpg": IMAGES[
        _bin("PMC9000001", "nanomaterials-12-00101-g001.jpg")
    ],
    "PMC9000001/nanomaterials-12-00101-g002.png": IMAGES[
        _bin("PMC9000001", "nanomaterials-12-00101-g002.jpg")
    ],
    "PMC9000001/nanomaterials-12-00101-g003.tif": IMAGES[
        _bin("PMC9000001", "nanomaterials-12-00101-g003.jpg")
    ],
    "PMC9000002/ijms-22-00002-g004.gif": IMAGES[_bin("PMC9000002", "ijms-22-00002-g004.jpg")],
    "PMC9000003/ultra-3-0003-g001.jpg": IMAGES[_bin("PMC9000003", "ultra-3-0003-g001.jpg")],
    **{f"{p}/article.xml": (DATA / f"{p}.xml").read_bytes() for p in ("PMC9000001", "PMC9000002")},
    "PMC9000003/article.xml": (DATA / "PMC9000003.xml").read_bytes(),
}


class Replay:
    """A fake Europe PMC: replays data/europepmc/, emulating pageSize, 404 for the unknown.

    ``script`` maps a URL to responses (or exceptions) returned before the normal one.
    ``kill_after`` raises :class:`Killed` once that many calls have completed.
    """

    def __init__(
        self,
        *,
        script: Mapping[str, list[Response | BaseException]] | None = None,
        kill_after: int | None = None,
    ) -> None:
        self.script = {url: list(items) for url, items in (script or {}).items()}
        self.kill_after = kill_after
        self.calls: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.timeouts: list[float] = []

    def get(self, url: str, *, headers: Mapping[str, str], timeout: float) -> Response:
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            raise Killed(url)
        self.calls.append(url)
        self.headers.append(dict(headers))
        self.timeouts.append(timeout)
        if self.script.get(url):
            item = self.script[url].pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        parts = urllib.parse.urlsplit(url)
        if url.startswith(f"{REST}/search?"):
            params = urllib.parse.parse_qs(parts.query)
            page = json.loads((DATA / CURSOR_FILES[params["cursorMark"][0]]).read_text())
            page["resultList"]["result"] = page["resultList"]["result"][
                : int(params["pageSize"][0])
            ]
            return Response(200, {"Content-Type": "application/json"}, json.dumps(page).encode())
        if url.startswith(REST) and url.endswith("/fullTextXML"):
            path = DATA / f"{parts.path.split('/')[-2]}.xml"
            if path.is_file():
                return Response(200, {"Content-Type": "application/xml"}, path.read_bytes())
        if url in IMAGES:
            return Response(200, {"Content-Type": "image/jpeg"}, IMAGES[url])
        return Response(404, {"Content-Type": "text/html"}, b"<html>404</html>")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def _client(
    tmp_path: Path, transport: Replay, clock: FakeClock | None = None, **kwargs: object
) -> EuropePMC:
    clock = clock or FakeClock()
    return EuropePMC(
        tmp_path / "cache",
        transport=transport,
        clock=clock,
        sleep=clock.sleep,
        user_agent="emdig-test",
        **kwargs,  # type: ignore[arg-type]
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "_search" not in p.parts and p.name != "done.json"
    }


# -- search ------------------------------------------------------------------------------------


def test_search_pages_filters_and_drops_unsafe(tmp_path: Path) -> None:
    replay = Replay()
    hits = _client(tmp_path, replay).search(QUERY, max_results=10)
    # page 1: A, closed X (no PMCID), B; page 2: C, hostile PMCID, A again; page 3: empty
    assert [h["pmcid"] for h in hits] == ["PMC9000001", "PMC9000002", "PMC9000003"]
    assert [h["licence"] for h in hits] == ["cc by", "cc by-nc", None]
    assert hits[0]["doi"] == "10.5555/nano.12.0001"
    assert hits[0]["journal"] == "Nanomaterials (Basel)"
    assert hits[1]["title"] == "Immunogold labelling of synaptic vesicles"
    assert len(replay.calls) == 3
    params = [urllib.parse.parse_qs(urllib.parse.urlsplit(u).query) for u in replay.calls]
    assert [p["cursorMark"][0] for p in params] == list(CURSOR_FILES)
    assert params[0]["query"][0] == f"({QUERY}) AND OPEN_ACCESS:y AND IN_EPMC:y AND HAS_FT:y"
    assert {p["format"][0] for p in params} == {"json"}
    assert {p["resultType"][0] for p in params} == {"core"}
    assert {p["pageSize"][0] for p in params} == {"10"}


def test_search_stops_at_max_results_and_caches_pages(tmp_path: Path) -> None:
    replay = Replay()
    client = _client(tmp_path, replay)
    hits = client.search(QUERY, max_results=1)
    assert [h["pmcid"] for h in hits] == ["PMC9000001"]
    assert len(replay.calls) == 1
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(replay.calls[0]).query)["pageSize"] == ["1"]
    assert client.search(QUERY, max_results=1) == hits
    assert len(replay.calls) == 1  # the second search came from the cache


def test_invalid_json_is_a_clear_error(tmp_path: Path) -> None:
    first = f"{REST}/search?" + urllib.parse.urlencode(
        {
            "query": f"({QUERY}) AND OPEN_ACCESS:y AND IN_EPMC:y AND HAS_FT:y",
            "resultType": "core",
            "format": "json",
            "pageSize": "5",
            "cursorMark": "*",
        }
    )
    replay = Replay(script={first: [Response(200, {}, b'{"hitCount": 3, "resultList": {')]})
    with pytest.raises(FetchError, match="invalid JSON") as info:
        _client(tmp_path, replay).search(QUERY, max_results=5)
    assert info.value.path == first
    assert not (tmp_path / "cache" / "_search").exists()  # nothing bad was cached


# -- fetch -------------------------------------------------------------------------------------


def test_fetch_writes_articles_images_and_markers(tmp_path: Path) -> None:
    replay = Replay()
    seen: list[tuple[int, int]] = []
    result = _client(tmp_path, replay).fetch(
        QUERY, max_results=10, progress=lambda *a: seen.append(a)
    )
    cache = tmp_path / "cache"
    assert result.done == [cache / p for p in ("PMC9000001", "PMC9000002", "PMC9000003")]
    assert result.skipped == [] and result.failed == []
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert _tree(cache) == EXPECTED_FILES  # bytes as served; extension from magic, not URL
    # nothing was written outside the cache by the hostile href or PMCID
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert not list(cache.rglob(".tmp-*"))

    done = json.loads((cache / "PMC9000001" / "done.json").read_text())
    assert done["doi"] == "10.5555/nano.12.0001" and done["licence"] == "cc by"
    assert [f["file"] for f in done["figures"]] == [
        "nanomaterials-12-00101-g001.jpg",
        "nanomaterials-12-00101-g002.png",
        "nanomaterials-12-00101-g003.tif",  # repeated in the fig-group: fetched once
    ]
    for f in done["figures"]:
        data = (cache / "PMC9000001" / f["file"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["bytes"] == len(data)
    assert done["missing"] == []
    missing = json.loads((cache / "PMC9000002" / "done.json").read_text())["missing"]
    assert [(m["href"], m["reason"].split(":")[0]) for m in missing] == [
        ("../../../../tmp/evil", "unsafe file name"),
        ("ijms-22-00002-g002", "not a JPEG/PNG/GIF/TIFF image"),
        ("ijms-22-00002-g003", "HTTP 404"),
    ]
    # the inline graphic and the table's graphic are not figures: never asked for
    assert not [u for u in replay.calls if "i001" in u or "t001" in u]
    # a decoded image equals what was generated (PNG is lossless)
    png = np.asarray(Image.open(cache / "PMC9000001" / "nanomaterials-12-00101-g002.png"))
    assert np.array_equal(png, np.random.default_rng(2).integers(0, 256, (24, 32), np.uint8))


def test_rerun_fetches_nothing(tmp_path: Path) -> None:
    _client(tmp_path, Replay()).fetch(QUERY, max_results=10)
    replay = Replay()
    result = _client(tmp_path, replay).fetch(QUERY, max_results=10)
    assert replay.calls == []
    assert result.done == [] and result.failed == []
    assert [p.name for p in result.skipped] == ["PMC9000001", "PMC9000002", "PMC9000003"]


def test_killed_run_resumes_with_each_url_fetched_once(tmp_path: Path) -> None:
    complete = Replay()
    _client(tmp_path / "ref", complete).fetch(QUERY, max_results=10)
    reference = _tree(tmp_path / "ref" / "cache")
    total = len(complete.calls)
    assert total == 3 + 3 + (3 + 3 + 1)  # search pages, articles, images of each article
    for kill_after in range(total):
        run = tmp_path / f"kill{kill_after}"
        first = Replay(kill_after=kill_after)
        with pytest.raises(Killed):
            _client(run, first).fetch(QUERY, max_results=10)
        second = Replay()
        result = _client(run, second).fetch(QUERY, max_results=10)
        assert Counter(first.calls + second.calls) == Counter(complete.calls), kill_after
        assert result.failed == []
        assert _tree(run / "cache") == reference
        assert not list((run / "cache").rglob(".tmp-*"))


def test_failed_article_does_not_stop_the_others(tmp_path: Path) -> None:
    replay = Replay(
        script={
            f"{REST}/PMC9000001/fullTextXML": [Response(200, {}, b"<article><body><fig>")],
            f"{REST}/PMC9000002/fullTextXML": [Response(404, {}, b"")],
        }
    )
    result = _client(tmp_path, replay).fetch(QUERY, max_results=10)
    cache = tmp_path / "cache"
    assert result.done == [cache / "PMC9000003"]
    assert [(p.name, reason.split("/fullTextXML: ")[-1][:19]) for p, reason in result.failed] == [
        ("PMC9000001", "not well-formed JAT"),
        ("PMC9000002", "HTTP 404"),
    ]
    assert all("\n" not in reason for _, reason in result.failed)
    assert not (cache / "PMC9000001" / "article.xml").exists()  # the bad XML was not kept
    # a later run retries exactly the failed articles
    again = Replay()
    result = _client(tmp_path, again).fetch(QUERY, max_results=10)
    assert [p.name for p in result.done] == ["PMC9000001", "PMC9000002"]
    assert [p.name for p in result.skipped] == ["PMC9000003"]
    assert _tree(cache) == EXPECTED_FILES


# -- politeness: rate limit, retries, user agent -----------------------------------------------


def test_rate_limit_spaces_requests(tmp_path: Path) -> None:
    clock = FakeClock()
    replay = Replay()
    starts: list[float] = []
    inner = replay.get

    def timed(url: str, *, headers: Mapping[str, str], timeout: float) -> Response:
        starts.append(clock())
        return inner(url, headers=headers, timeout=timeout)

    replay.get = timed  # type: ignore[method-assign]
    _client(tmp_path, replay, clock, rate_per_s=4.0).fetch(QUERY, max_results=10)
    gaps = np.diff(starts)
    assert len(starts) == 13
    assert gaps.min() == pytest.approx(0.25)  # never closer than 1 / rate
    assert starts[-1] - starts[0] == pytest.approx(12 * 0.25)  # and no slower than needed


def test_retries_honour_retry_after_and_back_off(tmp_path: Path) -> None:
    url = f"{REST}/PMC9000003/fullTextXML"
    clock = FakeClock()
    replay = Replay(
        script={
            url: [
                Response(503, {"Retry-After": "7"}, b""),
                Response(429, {}, b""),
                TimeoutError("timed out"),
                ConnectionResetError("reset"),
            ]
        }
    )
    client = _client(tmp_path, replay, clock, rate_per_s=0, backoff_s=0.5)
    assert client.get(url).body == (DATA / "PMC9000003.xml").read_bytes()
    assert replay.calls == [url] * 5
    assert clock.sleeps == [7.0, 1.0, 2.0, 4.0]  # Retry-After, then 0.5 * 2**attempt
    assert replay.timeouts == [30.0] * 5


def test_retries_give_up_and_4xx_is_not_retried(tmp_path: Path) -> None:
    url = f"{REST}/PMC9000003/fullTextXML"
    replay = Replay(script={url: [Response(500, {}, b"")] * 3})
    with pytest.raises(FetchError, match="gave up after 3 attempts: HTTP 500"):
        _client(tmp_path, replay, retries=2).get(url)
    assert len(replay.calls) == 3
    replay = Replay(script={url: [Response(403, {}, b"")]})
    with pytest.raises(FetchError, match="HTTP 403"):
        _client(tmp_path, replay).get(url)
    assert len(replay.calls) == 1


def test_user_agent_names_emdig_and_contact(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMDIG_CONTACT_EMAIL", "lab@example.org")
    assert default_user_agent() == f"emdig/{__version__} (mailto:lab@example.org)"
    replay = Replay()
    EuropePMC(tmp_path, transport=replay, rate_per_s=0).get(f"{REST}/PMC9000003/fullTextXML")
    assert replay.headers[0]["User-Agent"] == f"emdig/{__version__} (mailto:lab@example.org)"
    monkeypatch.setenv("EMDIG_CONTACT_EMAIL", "lab@example.org\r\nX-Evil: 1")
    assert default_user_agent() == f"emdig/{__version__}"
    monkeypatch.delenv("EMDIG_CONTACT_EMAIL")
    assert default_user_agent() == f"emdig/{__version__}"


# -- untrusted responses -----------------------------------------------------------------------


def test_size_cap(tmp_path: Path) -> None:
    url = f"{REST}/PMC9000003/fullTextXML"
    replay = Replay(script={url: [Response(200, {}, b"x" * 1001)]})
    with pytest.raises(TooLarge, match="1000 byte cap"):
        _client(tmp_path, replay, max_bytes=1000).get(url)
    assert len(replay.calls) == 1  # not retried
    with pytest.raises(TooLarge, match="declares 2000 bytes"):
        read_capped(io.BytesIO(b"x" * 10), max_bytes=1000, length="2000", url=url)
    with pytest.raises(TooLarge, match="exceeds"):
        read_capped(io.BytesIO(b"x" * 1001), max_bytes=1000, length=None, url=url)
    assert (
        read_capped(io.BytesIO(b"x" * 1000), max_bytes=1000, length="1000", url=url) == b"x" * 1000
    )


def test_oversized_image_is_recorded_missing(tmp_path: Path) -> None:
    big = _bin("PMC9000003", "ultra-3-0003-g001.jpg")
    replay = Replay(script={big: [Response(200, {}, b"\xff\xd8\xff" + b"\0" * 60_000)]})
    result = _client(tmp_path, replay, max_bytes=50_000).fetch(QUERY, max_results=10)
    assert len(result.done) == 3
    done = json.loads((tmp_path / "cache" / "PMC9000003" / "done.json").read_text())
    assert done["figures"] == [] and "50000 byte cap" in done["missing"][0]["reason"]


def test_hostile_hit_and_non_https_are_refused(tmp_path: Path) -> None:
    client = _client(tmp_path, Replay())
    with pytest.raises(EmdigError, match="not a PMCID"):
        client.fetch_article({"pmcid": "../../etc"})
    with pytest.raises(FetchError, match="not https"):
        UrllibTransport().get("file:///etc/passwd", headers={}, timeout=1.0)
    assert not (tmp_path / "etc").exists()


def test_wrong_root_element_is_corrupt(tmp_path: Path) -> None:
    url = f"{REST}/PMC9000003/fullTextXML"
    replay = Replay(script={url: [Response(200, {}, b"<html><body/></html>")]})
    with pytest.raises(CorruptFile, match="not a JATS <article>"):
        _client(tmp_path, replay).fetch_article({"pmcid": "PMC9000003"})


def test_extract_reads_what_fetch_downloaded(tmp_path: Path) -> None:
    """``figures extract`` on the fetch cache: JATS articles with their images beside them."""
    from emdig.figures.extract import extract

    _client(tmp_path, Replay()).fetch(QUERY, max_results=10)
    s = extract([tmp_path / "cache"], out=tmp_path / "ds")
    assert s.failures == [] and s.articles == 3
    data = json.loads((tmp_path / "ds" / "figures.json").read_text())
    first = [f for f in data.values() if f["doi"] == "10.5555/nano.12.0001"]
    # its three figures were fetched, so all three reach the dataset with their pixels
    assert len(first) == 3
    assert all(f["emdig"]["image_width"] == 32 for f in first)
    # figures whose image could not be fetched are counted, not failed
    assert s.figures_without_image >= 2


def test_cli_fetch_then_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``emdig figures fetch`` as a user runs it (the network replaced by the recordings)."""
    from typer.testing import CliRunner

    from emdig.cli import app
    from emdig.figures import sources

    monkeypatch.setattr(sources, "UrllibTransport", lambda **_kw: Replay())
    run = CliRunner().invoke
    r = run(app, ["figures", "fetch", "-q", QUERY, "--max", "10", "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "3 articles fetched" in r.output
    r = run(app, ["figures", "fetch", "-q", QUERY, "--max", "10", "-o", str(tmp_path / "a")])
    assert r.exit_code == 0 and "3 already in the cache" in r.output
    r = run(app, ["figures", "fetch", "-q", QUERY, "-o", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0 and len(json.loads(r.output)["done"]) == 3
    r = run(
        app,
        ["figures", "extract", str(tmp_path / "a"), "-o", str(tmp_path / "ds"), "--no-catalog",
         "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["articles"] == 3
