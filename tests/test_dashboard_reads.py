"""The dashboard and the static report read the archive and do nothing else: no page imports a metric
or opens a task file that archive content names, the app checks the Host header wherever it is
served, the report carries the dashboard's content security policy, a damaged record costs its own
line rather than the page, long stored texts are clipped with a way to see the whole, and a port in
use is one line of error."""

import html
import math
import re
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from test_dashboard import Campaigned, campaign_copy, reference, reference_campaign  # noqa: F401 - fixtures

from agentopt.archive.models import Campaign, Candidate, Evaluation, Note, Result
from agentopt.archive.store import Archive
from agentopt.optimizer.frontends.dashboard.app import create_app
from agentopt.optimizer.frontends.report import write_report

SECRET = "SECRET-ROW-7f3a"
MB = 1_000_000
PAGE_BYTES = 150_000  # a page showing 1 MB texts stays under this: they are clipped to a few KB each


def reader(url: str) -> TestClient:
    return TestClient(create_app(Archive(url, create=False, read_only=True)), base_url="http://127.0.0.1")


def every_page(client: TestClient, campaign_id: str, candidate_ids: list[int]) -> dict[str, str]:
    """Each page and stored text of the campaign, by URL; none of them may fail."""
    urls = ["/", f"/campaigns/{campaign_id}", f"/campaigns/{campaign_id}?sort=val&desc=1",
            f"/api/campaigns/{campaign_id}", "/compare?task=echo", f"/compare?campaigns={campaign_id},{campaign_id}"]
    for candidate_id in candidate_ids:
        urls += [f"/candidates/{candidate_id}", f"/compare?a={candidate_ids[0]}&b={candidate_id}",
                 f"/candidates/{candidate_id}/text?field=payload", f"/candidates/{candidate_id}/export"]
    pages = {}
    for url in urls:
        page = client.get(url)
        assert page.status_code in (200, 404, 409) and "Traceback" not in page.text, (url, page.status_code)
        pages[url] = page.text
    return pages


def test_pages_import_no_metric_and_open_no_task_file_the_archive_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, campaign_copy: Campaigned) -> None:  # noqa: F811
    url, campaign_id, best, hostile = campaign_copy
    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_metric.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                             "def score(example, prediction):\n    return 1.0\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("input,target\n" + "".join(f"{SECRET}-{i},{SECRET}-t{i}\n" for i in range(40)))
    writer = Archive(url)
    with writer.session() as s:
        config = s.get(Campaign, campaign_id).config
        config["task"] = {**config.get("task", {}), "ref": {"path": str(secret), "metric": "evil_metric:score"}}
        s.execute(update(Campaign).where(Campaign.id == campaign_id).values(config=config, task=str(secret)))
    writer.engine.dispose()
    monkeypatch.chdir(tmp_path)  # where a metric named by module would be imported from
    monkeypatch.delitem(sys.modules, "evil_metric", raising=False)
    with Archive(url).session() as s:
        ids = sorted(s.scalars(select(Candidate.id)))
    pages = every_page(reader(url), campaign_id, ids)
    assert not marker.exists() and "evil_metric" not in sys.modules, "a page imported the metric the archive names"
    assert not any(SECRET in text for text in pages.values()), "a page showed the task file the archive names"
    assert "which the dashboard does not open" in pages[f"/candidates/{best}"]
    assert "agentopt export" in pages[f"/candidates/{hostile}/export"]


def damage(url: str, campaign_id: str, parent: int) -> dict[str, int]:
    """Rows no campaign writes but a bug, a hand edit or another version might: payloads that are not
    objects, a graph with a cycle, note data that is not an object, infinite scores."""
    cycle = {"kind": "graph", "nodes": [{"name": "x", "template": "{input} {y}"}, {"name": "y", "template": "{x}"}],
             "edges": [["x", "y"], ["y", "x"]], "output": "y"}
    ids = {}
    writer = Archive(url)
    with writer.session() as s:
        for name, payload in (("array", ["a", "b"]), ("string", "just text"), ("cycle", cycle)):
            row = Candidate(campaign_id=campaign_id, kind="graph" if name == "cycle" else "prompt", payload=payload,
                            content_hash=f"damaged-{name}", strategy="ape")
            s.add(row)
            s.flush()
            ids[name] = row.id
        s.add_all([Note(campaign_id=campaign_id, candidate_id=parent, kind="loss", data=["not", "a", "mapping"],
                        key="damaged-1"),
                   Note(campaign_id=campaign_id, candidate_id=parent, kind="loss", data="a string", key="damaged-2"),
                   Result(candidate_id=ids["array"], split="val", example_id="v1", output="x", score=math.inf),
                   Evaluation(candidate_id=ids["array"], split="val", n=1, n_errors=0, mean=math.inf,
                              ci_low=-math.inf, ci_high=math.inf, tokens_mean=math.inf)])
    writer.engine.dispose()
    return ids


def test_a_damaged_record_costs_its_own_line_not_the_page(campaign_copy: Campaigned) -> None:  # noqa: F811
    url, campaign_id, best, _ = campaign_copy
    ids = damage(url, campaign_id, best)
    client = reader(url)
    every_page(client, campaign_id, [best, *ids.values()])
    said = {f"/candidates/{ids['array']}": ["its payload is a JSON array, not an object",
                                            "its val mean is inf", "score inf is not a number from 0 to 1"],
            f"/candidates/{ids['string']}": ["its payload is a JSON string, not an object"],
            f"/candidates/{ids['cycle']}": ["not a valid graph agent: cycle: x -&gt; y"],
            f"/candidates/{best}": ["data is a JSON array, not an object", "data is a JSON string, not an object"],
            f"/compare?a={best}&b={ids['array']}": [f"candidate #{ids['array']}: its payload is a JSON array"],
            f"/campaigns/{campaign_id}": ["not drawn: a record in it is damaged", "(damaged: its payload is"]}
    for page_url, lines in said.items():
        page = client.get(page_url)
        assert page.status_code == 200 and 'id="problems"' in page.text, page_url
        assert all(line in page.text for line in lines), (page_url, lines)
    live = client.get(f"/api/campaigns/{campaign_id}")
    assert live.status_code == 200 and None in live.json()["strategies"]["ape"], "inf is sent as null, not a 500"
    for page_url in (f"/?page={2**62}", f"/campaigns/{campaign_id}?page={2**62}"):
        page = client.get(page_url)
        assert page.status_code == 400 and "page must be a whole number" in page.text, page_url


def test_long_texts_are_clipped_with_the_whole_a_link_away(tmp_path: Path,
                                                           campaign_copy: Campaigned) -> None:  # noqa: F811
    url, campaign_id, best, _ = campaign_copy
    answer, why, feedback = "a" * MB, "r" * MB, "f" * MB
    writer = Archive(url)
    with writer.session() as s:
        huge = Candidate(campaign_id=campaign_id, kind="prompt", payload={"kind": "prompt", "instruction": "i" * MB},
                         content_hash="huge", strategy="ape", rationale=why)
        s.add(huge)
        s.flush()
        s.add_all([Result(candidate_id=huge.id, split="val", example_id="v/1&x", output=answer, score=1.0,
                          feedback=feedback, trace=[{"step": "t" * MB}]),
                   Note(campaign_id=campaign_id, candidate_id=huge.id, kind="loss", data={"loss": "n" * MB},
                        key="huge")])
        huge_id = huge.id
    writer.update_evaluation(huge_id, "val")
    writer.engine.dispose()
    client = reader(url)
    for page_url in (f"/candidates/{huge_id}", f"/compare?a={best}&b={huge_id}", f"/campaigns/{campaign_id}"):
        page = client.get(page_url)
        assert page.status_code == 200 and len(page.content) < PAGE_BYTES, (page_url, len(page.content))
    page = client.get(f"/candidates/{huge_id}").text
    links = {html.unescape(link) for link in re.findall(r'href="(/candidates/\d+/text\?[^"]+)"', page)}
    fields = {re.search(r"field=(\w+)", link)[1] for link in links}  # type: ignore[index]
    assert fields == {"payload", "rationale", "output", "feedback", "trace", "note"}, "each clipped text links to it"
    for link in links:
        served = client.get(link)
        assert served.status_code == 200 and served.headers["content-type"].startswith("text/plain"), link
        assert len(served.text) >= MB, link
        if "field=output" in link:
            assert served.text == answer
    assert client.get(f"/candidates/{huge_id}/text?field=output&split=val&example=nope").status_code == 404
    index = write_report(Archive(url, create=False, read_only=True), campaign_id, tmp_path / "report")
    assert index.stat().st_size < PAGE_BYTES, "the static report clips the top candidates' payloads too"


def test_the_python_app_checks_the_host_as_the_cli_server_does(reference_campaign: Campaigned) -> None:  # noqa: F811
    import agentopt

    app = agentopt.dashboard_app(reference_campaign[0])
    assert TestClient(app, base_url="http://127.0.0.1:8765").get("/").status_code == 200
    assert TestClient(app, base_url="http://localhost").get("/").status_code == 200
    assert TestClient(app, base_url="http://attacker.example").get("/").status_code == 400, "DNS rebinding"


def test_the_static_report_carries_the_dashboards_csp(tmp_path: Path,
                                                       reference_campaign: Campaigned) -> None:  # noqa: F811
    url, campaign_id, _, _ = reference_campaign
    index = write_report(Archive(url, create=False, read_only=True), campaign_id, tmp_path / "report").read_text()
    [meta] = [line for line in index.splitlines() if 'http-equiv="Content-Security-Policy"' in line]
    assert "script-src &#39;self&#39;" in meta and "object-src &#39;none&#39;" in meta
    assert "frame-ancestors" not in meta, "a <meta> policy cannot set it; browsers warn about it"
