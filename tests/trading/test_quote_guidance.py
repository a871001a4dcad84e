"""Guided quotes: errors at the top and on their field in people's words, a form address
that can be reloaded, a quote page that asks the ledger again (no Buy button once the
budget is gone) and names the largest epsilon that still fits."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from tests.helpers import csrf_token_from
from tests.trading.test_pages import ask_quote, browser_for  # noqa: F401 - fixture reused

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_errors_are_listed_first_and_under_their_field_in_words(
    listed_cancer,
    researcher,
    browser_for,  # noqa: F811
) -> None:
    web = browser_for(researcher[0])
    response = ask_quote(web, listed_cancer["id"], epsilon="5", batch_size="100000")
    assert response.status_code == 422
    html = unescape(response.get_data(as_text=True))
    summary_at = html.index('id="errors"')
    assert summary_at < html.index('id="quote-heading"')  # before the form, at the top
    summary = html[summary_at : html.index("</div>", summary_at)]
    assert '<a href="#epsilon">' in summary
    # The form posts to #errors so the browser shows the summary after the round trip.
    assert re.search(r'<form method="post" action="/datasets/\w+/quote#errors"', html)
    # Repeated under the field, which is marked invalid.
    assert re.search(
        r'id="epsilon"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="epsilon"', html
    )
    assert 'id="epsilon-error"' in html

    # A planner error names the field in words, never its internal name.
    big = ask_quote(web, listed_cancer["id"], batch_size="100000")
    text = unescape(big.get_data(as_text=True))
    assert big.status_code == 422
    summary = text[text.index('id="errors"') :].split("</div>")[0]
    words = re.sub(r"<[^>]+>", "", summary)
    assert "Batch size 100000 is larger than" in words and "batch_size" not in words
    assert '<a href="#batch_size">' in summary


def test_the_form_address_can_be_reloaded(listed_cancer, researcher, browser_for) -> None:  # noqa: F811
    web = browser_for(researcher[0])
    response = web.get(f"/datasets/{listed_cancer['id']}/quote")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/datasets/{listed_cancer['id']}#quote-heading"
    page = web.get(response.headers["Location"].split("#")[0]).get_data(as_text=True)
    assert 'data-testid="epsilon-explainer"' in page
    # Presets up to the owner's cap of 2 per run.
    assert re.findall(r'data-epsilon="([\d.]+)"', page) == ["0.5", "1"]


def test_a_quote_that_no_longer_fits_loses_its_buy_button_and_names_the_largest_epsilon(
    app,
    owner,
    create_draft,
    upload,
    researcher,
    browser_for,  # noqa: F811
) -> None:
    from tests.catalog.conftest import cancer_rows, metadata, to_csv

    _, owner_headers = owner
    tight = metadata(privacy={"epsilon_total": 1.2, "delta": 1e-5, "max_epsilon_per_run": 1.2})
    draft = create_draft(owner_headers, tight)
    assert upload(owner_headers, draft["id"], to_csv(cancer_rows())).status_code == 200
    web = browser_for(researcher[0])
    first = ask_quote(web, draft["id"], epsilon="1").headers["Location"]
    second = ask_quote(web, draft["id"], epsilon="1").headers["Location"]
    page = unescape(web.get(second).get_data(as_text=True))
    assert "Fits the dataset" in page and 'data-testid="buy"' in page
    assert "compose, they do not add up" in page

    bought = web.post(f"{first}/buy", data={"csrf_token": csrf_token_from(web, first)})
    assert bought.status_code == 303 and bought.headers["Location"].startswith("/runs/")
    # The second quote was made when it fitted; the first run's reservation now holds most
    # of the budget. Trying to buy fails, and the page no longer offers to.
    refused = web.post(f"{second}/buy", data={"csrf_token": csrf_token_from(web, second)})
    assert refused.status_code == 303 and refused.headers["Location"] == second
    page = unescape(web.get(second).get_data(as_text=True))
    assert "cannot hold this run" in page  # the flash from the refused purchase
    assert "Does not fit any more" in page and "Fits the dataset" not in page
    assert 'data-testid="buy"' not in page
    largest = float(
        re.search(r'data-testid="largest-epsilon">.*?<strong>([\d.]+)</strong>', page, re.S).group(
            1
        )
    )
    assert 0 < largest < 1

    # The figure is right: a quote for it fits, one a little above does not.
    fits = ask_quote(web, draft["id"], epsilon=str(largest))
    assert "Fits the dataset" in unescape(web.get(fits.headers["Location"]).get_data(as_text=True))
    over = ask_quote(web, draft["id"], epsilon=str(round(largest + 0.05, 2)))
    assert "Does not fit" in unescape(web.get(over.headers["Location"]).get_data(as_text=True))


@pytest.mark.parametrize("choice", ["now", "greenest"])
def test_the_buyer_chooses_to_start_now_or_at_the_greenest_time(
    app,
    listed_cancer,
    researcher,
    browser_for,  # noqa: F811
    choice: str,
) -> None:
    from datetime import UTC, datetime, timedelta

    web = browser_for(researcher[0])
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    quote = ask_quote(web, listed_cancer["id"], deadline=later).headers["Location"]
    page = unescape(web.get(quote).get_data(as_text=True))
    assert 'data-testid="start-choice"' in page
    assert re.search(r'value="greenest" checked', page)  # the suggestion is the default
    huey = app.extensions["market"].queue.huey
    bought = web.post(
        f"{quote}/buy", data={"csrf_token": csrf_token_from(web, quote), "start": choice}
    )
    assert bought.status_code == 303 and bought.headers["Location"].startswith("/runs/")
    run_id = bought.headers["Location"].rsplit("/", 1)[1]
    # No consumer runs here: the task waits in the queue with its eta (None: start now).
    tasks = [t for t in [*huey.pending(), *huey.scheduled()] if run_id in str(t.args)]
    assert len(tasks) == 1
    if choice == "now":
        assert tasks[0].eta is None
    else:
        from market.trading.models import Quote
        from market.trading.services import scheduled_start

        with app.extensions["market"].database.read() as session:
            start = scheduled_start(session.get(Quote, quote.rsplit("/", 1)[1]))
        assert start is not None
        if start > datetime.now(UTC):  # a greenest start in the future is the task's eta
            assert tasks[0].eta is not None
            assert abs((tasks[0].eta.replace(tzinfo=UTC) - start).total_seconds()) < 1


def test_the_form_starts_from_the_templates_defaults(
    listed_cancer,
    researcher,
    browser_for,  # noqa: F811
) -> None:
    from privacy.specs import TEMPLATE_DEFAULTS, template_defaults

    web = browser_for(researcher[0])
    raw = web.get(f"/datasets/{listed_cancer['id']}").get_data(as_text=True)
    page = unescape(raw)
    # 569 rows: 455 expected training rows, so batches of at most 113 (four per epoch).
    assert re.search(r'id="batch_size"[^>]*value="113"', page)
    epochs = template_defaults({"template": "logistic_regression"}, "tabular", 1.0)["epochs"]
    assert re.search(rf'id="epochs"[^>]*value="{epochs}"', page)  # the measured recipe's
    found = re.search(r'data-defaults="([^"]*)"', raw)
    assert found
    defaults = json.loads(unescape(found[1]))
    assert defaults["mlp"]["learning_rate"] == TEMPLATE_DEFAULTS["mlp"]["learning_rate"]
    assert set(defaults) >= {"logistic_regression", "mlp"}
