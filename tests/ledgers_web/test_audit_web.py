"""Auditors on the web: download the signed log and its checkpoint and verify them offline,
browse the entries with filters and pages, see each dataset's budget used as a meter, and
read the privacy ledger's table numbered like its chart."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from market.audit import log
from market.audit.cli import audit
from market.trading.models import ReleaseState
from tests.ledgers_web.conftest import when

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _append(app, count: int, *, kind: str, subject: str) -> None:
    market = app.extensions["market"]
    for i in range(count):
        with market.database.write() as session:
            log.record(
                session, market.settings, kind=kind, subject=subject, actor_id=None, data={"i": i}
            )


def test_auditor_downloads_the_log_and_checkpoint_and_they_verify_offline(
    app, client, browser_for, people, listed_cancer, seed_run, token_for, tmp_path: Path
) -> None:
    seed_run(listed_cancer["id"], people["researcher"].id, finished_at=when(1, 5), total="2.48")
    web = browser_for(people["auditor"])
    page = web.get("/audit").get_data(as_text=True)
    assert 'href="/audit/log.jsonl"' in page and 'href="/audit/entries"' in page

    kept = web.get("/audit/checkpoint.txt")
    assert kept.status_code == 200
    (tmp_path / "kept.txt").write_bytes(kept.data)
    # Entries appended after the checkpoint was kept: the download covers them too.
    _append(app, 3, kind="test.later", subject="later")
    download = web.get("/audit/log.jsonl")
    assert download.status_code == 200
    assert download.mimetype == "application/jsonl"
    body = download.get_data(as_text=True)
    match = re.search(r'filename="audit-log-(\d+)\.jsonl"', download.headers["Content-Disposition"])
    assert match
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["tree_size"] == int(match.group(1))
    assert sum(1 for line in lines if line["type"] == "entry") == int(match.group(1))
    (tmp_path / "log.jsonl").write_text(body)
    (tmp_path / "signing.pub").write_bytes(web.get("/audit/public-key.pem").data)

    args = [str(tmp_path / "log.jsonl"), "--public-key", str(tmp_path / "signing.pub")]
    done = CliRunner().invoke(audit, ["verify", *args, "--checkpoint", str(tmp_path / "kept.txt")])
    assert done.exit_code == 0, done.output
    assert f"verifies: {match.group(1)} entries" in done.output

    # One altered byte in the download is caught.
    tampered = body.replace("later", "LATER", 1)
    (tmp_path / "bad.jsonl").write_text(tampered)
    done = CliRunner().invoke(audit, ["verify", str(tmp_path / "bad.jsonl"), *args[1:]])
    assert done.exit_code == 1

    # The API gives the same export to a bearer token (exported_at aside).
    api = client.get("/api/v1/audit/export", headers=token_for(people["auditor"]))
    assert api.status_code == 200
    api_lines = api.get_data(as_text=True).splitlines()
    assert api_lines[1:] == body.splitlines()[1:]


def test_the_log_and_the_browser_are_for_auditors_only(browser_for, people, token_for, client):
    for role in ("researcher", "owner"):
        web = browser_for(people[role])
        assert web.get("/audit/log.jsonl").status_code == 403
        assert web.get("/audit/entries").status_code == 403
    response = client.get("/api/v1/audit/export", headers=token_for(people["researcher"]))
    assert response.status_code == 403 and "error" in response.get_json()
    assert browser_for(people["admin"]).get("/audit/entries").status_code == 200


def test_entries_browser_filters_by_kind_subject_and_date_and_pages(
    app, browser_for, people
) -> None:
    _append(app, 55, kind="test.bulk", subject="bulk-subject")
    _append(app, 2, kind="test.other", subject="other-subject")
    web = browser_for(people["auditor"])

    def seqs(html: str) -> list[int]:
        table = html.split('data-testid="entries"')[1].split("</table>")[0]
        return [int(s) for s in re.findall(r'<td class="num">(\d+)</td>\s*<td>\d{4}-', table)]

    first = web.get("/audit/entries?kind=test.bulk").get_data(as_text=True)
    assert "55 entries match" in first
    assert len(seqs(first)) == 50 and "page 1 of 2" in first
    assert seqs(first) == sorted(seqs(first), reverse=True)  # newest first
    second = web.get("/audit/entries?kind=test.bulk&page=2").get_data(as_text=True)
    assert len(seqs(second)) == 5 and not set(seqs(first)) & set(seqs(second))
    assert 'rel="prev"' in second and "kind=test.bulk" in second  # the pager keeps filters

    by_subject = web.get("/audit/entries?subject=other-subject").get_data(as_text=True)
    assert "2 entries match" in by_subject and "test.bulk" not in by_subject.split("<table")[1]

    today = datetime.now(UTC).date().isoformat()
    dated = web.get(f"/audit/entries?kind=test.bulk&since={today}&until={today}")
    assert "55 entries match" in dated.get_data(as_text=True)
    none = web.get("/audit/entries?until=2000-01-01").get_data(as_text=True)
    assert "0 entries match" in none
    bad = web.get("/audit/entries?since=yesterday&page=x")
    assert bad.status_code == 200 and "is not a date" in bad.get_data(as_text=True)


def test_privacy_index_meters_and_table_numbers_match_the_chart(
    browser_for, people, listed_cancer, seed_run
) -> None:
    dataset_id = listed_cancer["id"]
    buyer = people["researcher"].id
    seed_run(dataset_id, buyer, finished_at=when(1, 5), total="2.48", epsilon_after=0.5)
    seed_run(
        dataset_id,
        buyer,
        finished_at=when(1, 9),
        total="3.00",
        epsilon_after=0.9,
        state=ReleaseState.RELEASED,
    )
    seed_run(dataset_id, buyer, finished_at=when(2, 2), total="4.00", epsilon_after=0.8)
    for role in ("auditor", "owner"):
        index = browser_for(people[role]).get("/ledger/privacy").get_data(as_text=True)
        cell = index.split('data-testid="budget-used"')[1].split("</td>")[0]
        meter = re.search(r'<meter[^>]*max="([\d.]+)"[^>]*value="([\d.]+)"', cell, re.S)
        assert meter, cell
        assert float(meter.group(2)) > 0 and float(meter.group(2)) <= float(meter.group(1))
        assert "%" in cell

    page = browser_for(people["auditor"]).get(f"/ledger/privacy/{dataset_id}")
    table = page.get_data(as_text=True).split('data-testid="releases"')[1].split("</table>")[0]
    points = re.findall(r'data-testid="point">([^<]+)<', table)
    assert points == ["1", "—", "2"]  # the released reservation is not plotted
