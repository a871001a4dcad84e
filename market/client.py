"""A Python client for the marketplace's HTTP API (docs/api.md), on httpx.

Researchers script the whole loop with it: find a dataset, get a quote, buy the run, watch
it train, and load the delivered model as a ready ``torch.nn.Module``::

    from market.client import MarketClient

    market = MarketClient.login("http://127.0.0.1:5000", "researcher@demo.example", "...")
    cancer = market.datasets(q="breast cancer")[0]
    quote = market.quote(cancer["id"], "logistic_regression", epsilon=1.0,
                         epochs=10, batch_size=64, learning_rate=0.1)
    print(quote.fits_budget, quote.mechanism["noise_multiplier"], quote.price)
    run = market.buy(quote)
    run.wait()                       # a progress bar: steps, and epsilon spent so far
    model = run.model()              # torch.nn.Module in eval mode, weights loaded
    print(run.privacy_receipt["epsilon_spent"], run.cost_receipt["measured"]["total"])

Every error the API reports is raised as one class, ``MarketAPIError``, carrying the API's
error shape (``status``, ``code``, ``message``, ``details``), so a script branches on the
stable ``code`` rather than on HTTP statuses or message text. A run that ends ``failed``
raises ``RunFailed`` (a ``MarketAPIError`` whose ``code`` is the run's error code).

Models are read with ``privacy.model_io.load_model``: safetensors plus JSON metadata, never
pickle, so opening a downloaded model cannot run code. torch is imported only when a model
is loaded, so listing and buying stay light.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from torch import nn

    from privacy.model_io import LoadedModel

__all__ = ["MarketAPIError", "MarketClient", "Quote", "Run", "RunFailed"]

API_PREFIX = "/api/v1"
FINISHED = ("succeeded", "failed")


class MarketAPIError(Exception):
    """An error reported by the marketplace, in the API's error shape.

    ``status`` is the HTTP status (``None`` when the server could not be reached or, for
    ``RunFailed``, when the request itself succeeded); ``code`` is the stable snake_case
    code to branch on, e.g. ``budget_exceeded``, ``invalid_credentials``, ``not_found``.

    >>> err = MarketAPIError(409, "budget_exceeded", "the budget cannot hold it", {})
    >>> str(err)
    'budget_exceeded (HTTP 409): the budget cannot hold it'
    """

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        where = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{code}{where}: {message}")

    @classmethod
    def from_response(cls, response: httpx.Response) -> MarketAPIError:
        """Build the error from a 4xx/5xx response; a body not in the API's shape (a proxy's
        HTML page, say) still gives a readable error with code ``http_<status>``."""
        try:
            error = response.json()["error"]
            return cls(
                response.status_code,
                str(error["code"]),
                str(error["message"]),
                dict(error.get("details") or {}),
            )
        except (ValueError, KeyError, TypeError):
            text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
            return cls(
                response.status_code,
                f"http_{response.status_code}",
                text or response.reason_phrase,
            )


class RunFailed(MarketAPIError):
    """The run ended ``failed``; ``code``/``message`` are the run's, ``run`` the run itself."""

    def __init__(self, run: Run) -> None:
        error = run.error or {}
        super().__init__(
            None,
            error.get("code", "run_failed"),
            f"run {run.id} failed: {error.get('message', 'no reason given')}",
            {"run_id": run.id},
        )
        self.run = run


def model_request(model: str | list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    """Accept the shorthands a person types: a template name, a list of layers, or the
    API's own ``{"template": ...}`` / ``{"layers": [...]}`` mapping.

    >>> model_request("logistic_regression")
    {'template': 'logistic_regression'}
    >>> model_request([{"type": "flatten"}])
    {'layers': [{'type': 'flatten'}]}
    """
    if isinstance(model, str):
        return {"template": model}
    if isinstance(model, list):
        return {"layers": model}
    return dict(model)


@dataclass
class Quote:
    """A stored quote: the planned mechanism, the estimated cost and whether it fits.

    ``data`` is the API's JSON as returned; the properties name what people look at.
    A quote that does not fit says why in ``reason``; buying it raises ``budget_exceeded``.
    """

    data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def fits_budget(self) -> bool:
        return bool(self.data["fits_budget"])

    @property
    def reason(self) -> str | None:
        return self.data.get("reason")

    @property
    def mechanism(self) -> dict[str, Any]:
        """noise_multiplier, sample_rate, steps, accountant, epsilon, delta, ..."""
        return dict(self.data["mechanism"])

    @property
    def estimate(self) -> dict[str, Any]:
        """seconds, energy_kwh, emissions_kg and every price term."""
        return dict(self.data["estimate"])

    @property
    def price(self) -> str:
        """The estimated total, e.g. ``"7.06 EUR"`` (a Decimal string, never a float)."""
        price = self.data["estimate"]["price"]
        return f"{price['total']} {price['currency']}"


@dataclass
class Run:
    """A bought run. ``refresh()`` re-reads it; ``wait()`` polls until it finishes.

    ``data`` is the API's JSON as last read. Receipts and metrics are ``None`` until the run
    succeeds; the model can be downloaded only by its buyer, once it has succeeded.
    """

    client: MarketClient = field(repr=False)
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def progress(self) -> dict[str, Any]:
        """``{"step", "steps", "epsilon_spent"}`` as the worker last reported them."""
        return dict(self.data["progress"])

    @property
    def privacy_receipt(self) -> dict[str, Any] | None:
        return self.data.get("privacy_receipt")

    @property
    def cost_receipt(self) -> dict[str, Any] | None:
        return self.data.get("cost_receipt")

    @property
    def metrics(self) -> dict[str, Any] | None:
        """Held-out metrics, released with differential privacy (so they are noisy)."""
        return self.data.get("metrics")

    @property
    def error(self) -> dict[str, str] | None:
        return self.data.get("error")

    def refresh(self) -> Run:
        """Re-read the run from the server (returns ``self`` for chaining)."""
        self.data = self.client.get_json(f"/runs/{self.id}")
        return self

    def wait(
        self, timeout: float | None = None, progress: bool = True, poll_interval: float = 0.5
    ) -> Run:
        """Poll until the run finishes, showing a tqdm bar of steps with epsilon so far.

        Raises:
            RunFailed: the run ended ``failed`` (its code and message are on the error).
            TimeoutError: ``timeout`` seconds passed first (the run goes on server-side).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _progress_bar(self) if progress else None
        try:
            while True:
                if bar is not None:
                    _show(bar, self)
                if self.status in FINISHED:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"run {self.id} is still {self.status} after {timeout:g} s "
                        f"(step {self.progress['step']} of {self.progress['steps']})"
                    )
                time.sleep(poll_interval)
                self.refresh()
        finally:
            if bar is not None:
                bar.close()
        if self.status == "failed":
            raise RunFailed(self)
        return self

    def model_bytes(self) -> bytes:
        """The delivered safetensors file, as bytes (buyer only, once succeeded)."""
        return self.client.get_bytes(f"/runs/{self.id}/model")

    def model_file(self, path: str | Path) -> Path:
        """Save the delivered safetensors file to ``path`` and return the path."""
        target = Path(path)
        target.write_bytes(self.model_bytes())
        return target

    def loaded_model(self) -> LoadedModel:
        """The module with the metadata it was trained with: ``.preprocessing`` encodes your
        own data exactly as training did (``privacy.preprocessing.encode_features``)."""
        from privacy.model_io import load_model

        return load_model(self.model_bytes())

    def model(self) -> nn.Module:
        """The trained model as a ready ``torch.nn.Module`` (eval mode, weights loaded)."""
        return self.loaded_model().module


def _progress_bar(run: Run) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=max(int(run.progress["steps"]), 1), desc=f"run {run.id[:8]}", unit="step")


def _show(bar: Any, run: Run) -> None:
    progress = run.progress
    bar.total = max(int(progress["steps"]), 1)
    bar.n = min(int(progress["step"]), bar.total)
    bar.set_postfix(status=run.status, epsilon=f"{float(progress['epsilon_spent']):.3f}")


class MarketClient:
    """The marketplace's HTTP API, one method per use case.

    ``token`` is an API token (``MarketClient.login`` gets one from an e-mail and
    password). ``transport`` is passed to httpx, e.g. ``httpx.WSGITransport(app=app)`` to
    talk to an application in the same process (what ``market demo`` does).

    >>> market = MarketClient("http://127.0.0.1:5000", token="mkt_...")  # doctest: +SKIP
    >>> [d["title"] for d in market.datasets(tag="health")]  # doctest: +SKIP
    ['Breast cancer diagnoses, Wisconsin (scikit-learn demo)']
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX, headers=headers, timeout=timeout, transport=transport
        )

    @classmethod
    def login(cls, url: str, email: str, password: str, **options: Any) -> MarketClient:
        """Sign in with ``POST /api/v1/tokens`` and return a client holding the token.

        Raises ``MarketAPIError`` with code ``invalid_credentials`` on a wrong password.
        """
        anonymous = cls(url, **options)
        try:
            issued = anonymous.post_json("/tokens", {"email": email, "password": password})
        finally:
            anonymous.close()
        return cls(url, token=issued["token"], **options)

    # -- plumbing: every request goes through _request, so every error has one shape --

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise MarketAPIError(
                None, "unreachable", f"cannot reach {self.url}: {exc}", {}
            ) from exc
        if response.is_error:
            raise MarketAPIError.from_response(response)
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        """GET a path under /api/v1 (``None`` parameters are left out)."""
        query = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", path, params=query).json()

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, json=body).json()

    def get_bytes(self, path: str) -> bytes:
        return self._request("GET", path).content

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MarketClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the catalog --

    def me(self) -> dict[str, Any]:
        """The signed-in account (id, email, role)."""
        result: dict[str, Any] = self.get_json("/me")
        return result

    def datasets(
        self, q: str | None = None, tag: str | None = None, *, mine: bool = False
    ) -> list[dict[str, Any]]:
        """Every listing matching the search, all pages fetched (metadata only, never a row).

        ``mine=True`` (owners) returns your own listings, drafts included.
        """
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.get_json(
                "/datasets", q=q, tag=tag, page=page, mine="true" if mine else None
            )
            items.extend(body["items"])
            if not body["items"] or len(items) >= int(body["total"]):
                return items
            page += 1

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        """One listing: metadata, schema, rows and ``budget`` (total, spent, remaining)."""
        result: dict[str, Any] = self.get_json(f"/datasets/{dataset_id}")
        return result

    def create_dataset(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Owners: create a listing draft from metadata (docs/api.md)."""
        result: dict[str, Any] = self.post_json("/datasets", metadata)
        return result

    def upload(
        self, dataset_id: str, content: bytes | IO[bytes], content_type: str
    ) -> dict[str, Any]:
        """Owners: send the draft's file; it is encrypted as it arrives, then validated, and
        the dataset comes back ``listed``. ``content_type`` is ``text/csv``,
        ``application/vnd.apache.parquet`` or ``application/x-npz``."""
        response = self._request(
            "PUT",
            f"/datasets/{dataset_id}/file",
            content=content,
            headers={"Content-Type": content_type},
        )
        result: dict[str, Any] = response.json()
        return result

    # -- trading --

    def quote(
        self,
        dataset_id: str,
        model: str | list[dict[str, Any]] | dict[str, Any],
        epsilon: float,
        *,
        delta: float | None = None,
        epochs: int = 5,
        batch_size: int = 256,
        learning_rate: float | None = None,
        max_grad_norm: float | None = None,
        worker_class: str = "cpu",
        **extra: Any,
    ) -> Quote:
        """Plan and price a run; nothing is reserved until ``buy``.

        ``model`` is a template name (``"logistic_regression"``, ``"mlp"``), a list of
        layers, or the API's mapping. ``learning_rate=None`` and ``max_grad_norm=None``
        take the measured recipe's values for this template, data and epsilon. A quote that
        does not fit the budget is still returned, with ``fits_budget`` false and the
        ``reason``.
        """
        body = {
            "dataset_id": dataset_id,
            "model": model_request(model),
            "epsilon": epsilon,
            "delta": delta,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "max_grad_norm": max_grad_norm,
            "worker_class": worker_class,
            **extra,
        }
        return Quote(self.post_json("/quotes", body))

    def buy(self, quote: Quote | str) -> Run:
        """Buy a quoted run: the budget is reserved atomically and the training queued.

        Raises ``MarketAPIError`` ``budget_exceeded`` (409) when the budget cannot hold it,
        ``quote_unavailable`` when the quote expired or was already used.
        """
        quote_id = quote.id if isinstance(quote, Quote) else quote
        return Run(self, self.post_json("/runs", {"quote_id": quote_id}))

    def run(self, run_id: str) -> Run:
        """A run you bought (or, for owners and auditors, a run on data you may see)."""
        return Run(self, self.get_json(f"/runs/{run_id}"))

    def runs(self, dataset_id: str | None = None) -> list[Run]:
        """Researchers: your runs; owners: runs on your data; auditors: all runs."""
        body = self.get_json("/runs", dataset_id=dataset_id)
        return [Run(self, item) for item in body["items"]]
