"""An uploaded file's plaintext never lands on disk: not in the instance, not in temp files.

The upload carries a unique marker value and is large enough (several MB) that Werkzeug
would spool a form upload to a temporary file if we let it parse the form. After the upload,
the instance folder and every file written to the temp directory since the test began are
scanned for the marker and for whole rows of the file.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.catalog.conftest import cancer_rows, metadata, to_csv
from tests.helpers import csrf_token_from, login, multipart_body

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


_WATCH: dict[str, object] = {"active": False, "exclude": None, "seen": []}


def _audit(event: str, args: tuple) -> None:
    """Record files created in the temp directory (outside the instance) while active.

    A scan by name cannot see Werkzeug's spooled uploads: ``TemporaryFile`` is unlinked (or
    O_TMPFILE) from birth, yet its blocks are on disk. The audit hook sees it being opened.
    """
    if not _WATCH["active"]:
        return
    if event == "tempfile.mkstemp":
        _WATCH["seen"].append(str(args[0]))  # type: ignore[union-attr]
    elif event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
        path = os.fsdecode(args[0])
        mode = args[1] if len(args) > 1 else "r"
        flags = args[2] if len(args) > 2 else 0
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR)
        )
        temp = tempfile.gettempdir()
        if writing and path.startswith(temp) and not path.startswith(str(_WATCH["exclude"])):
            _WATCH["seen"].append(path)  # type: ignore[union-attr]


sys.addaudithook(_audit)


@contextmanager
def no_temp_files_written(exclude: Path) -> Iterator[None]:
    _WATCH.update(active=True, exclude=exclude, seen=[])
    try:
        yield
    finally:
        _WATCH["active"] = False
    assert _WATCH["seen"] == [], f"files written in the temp directory: {_WATCH['seen']}"


def _marked_csv() -> tuple[bytes, bytes, list[bytes]]:
    marker = f"7.{secrets.randbelow(10**12):012d}3"
    rows = [dict(r) for r in cancer_rows()] * 60  # 34,140 rows, about 1.1 MB
    rows = [dict(r) for r in rows]
    rows[1234]["mean radius"] = marker
    body = to_csv(rows)
    lines = body.split(b"\n")
    samples = [lines[1235], lines[4000], lines[30000]]
    assert marker.encode() in body and all(len(s) > 20 for s in samples)
    return body, marker.encode(), samples


def _files_to_scan(home: Path, since: float) -> list[Path]:
    found = [p for p in home.rglob("*") if p.is_file()]
    for root, _dirs, files in os.walk(tempfile.gettempdir()):
        for name in files:
            path = Path(root, name)
            try:
                stat = path.stat()
            except OSError:
                continue
            if stat.st_mtime >= since and stat.st_size < 512 << 20 and path.is_file():
                found.append(path)
    return found


def _assert_absent(home: Path, since: float, needles: list[bytes]) -> int:
    scanned = 0
    for path in _files_to_scan(home, since):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        scanned += 1
        for needle in needles:
            assert needle not in data, f"plaintext found in {path}"
    return scanned


def test_api_upload_leaves_no_plaintext(app, client, owner, create_draft, upload, tmp_path) -> None:
    since = time.time() - 1
    body, marker, samples = _marked_csv()
    _, headers = owner
    draft = create_draft(
        headers, metadata(privacy={"epsilon_total": 10, "delta": 1e-6, "max_epsilon_per_run": 2})
    )
    with no_temp_files_written(exclude=tmp_path):
        response = upload(headers, draft["id"], body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["rows"] == 34140
    scanned = _assert_absent(tmp_path, since, [marker, *samples])
    assert scanned >= 2  # at least the database and the ciphertext were read


def test_form_upload_leaves_no_plaintext(app, client, make_user, tmp_path) -> None:
    from market.accounts.models import Role
    from tests.conftest import TEST_PASSWORD

    since = time.time() - 1
    body, marker, samples = _marked_csv()
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    import json

    token = csrf_token_from(client, "/datasets/new")
    meta = metadata(privacy={"epsilon_total": 10, "delta": 1e-6, "max_epsilon_per_run": 2})
    # Encoded here, in memory: the test client's own encoder would spool a large file.
    form, content_type = multipart_body(
        {"csrf_token": token, "metadata": json.dumps(meta)}, ("file", "cancer.csv", body)
    )
    with no_temp_files_written(exclude=tmp_path):
        response = client.post("/datasets/new", data=form, content_type=content_type)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "34,140 rows" in page
    assert re.search(r'data-testid="status">listed<', page)
    _assert_absent(tmp_path, since, [marker, *samples])
