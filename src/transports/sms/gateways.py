"""Gateway configurations and their wire formats: Kannel's ``sendsms`` and a generic HTTP/JSON API.

A gateway is data (attrs, frozen), built from keyword arguments or from a TOML table with
``gateway_from_mapping``. Secrets are ``env:NAME`` references, resolved when the transport opens.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from typing import Any, TypeAlias
from urllib.parse import quote

import attrs

from tcs_core.errors import ValidationError
from transports.sms.encoding import Encoded
from transports.sms.phone import NumberFormat

__all__ = [
    "DEFAULT_JSON_BODY",
    "Answer",
    "AnswerKind",
    "Gateway",
    "HttpJsonGateway",
    "KannelGateway",
    "gateway_from_mapping",
    "json_answer",
    "kannel_answer",
    "render_template",
]

#: Kannel delivery-report types (``%d``) → Dispatch receipt statuses.
KANNEL_DLR = {1: "delivered", 2: "failed", 4: "buffered", 8: "accepted", 16: "rejected"}


def _token(token: str) -> str:
    """The receiver's token as a query parameter (``t``), if there is one."""
    return f"&t={quote(token)}" if token else ""


def _positive(name: str) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
        if not value > 0:
            raise ValidationError(f"gateway.{name}", "must be positive")

    return check


def _http_url(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not re.match(r"^https?://[^/\s]+", value or ""):
        raise ValidationError(f"gateway.{attribute.name}", f"{value!r} is not an http(s) URL")


def _name(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", value or ""):
        raise ValidationError("gateway.name", f"{value!r}: use 1-40 letters, digits, _ or -")


def _sender(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    # Alphanumeric sender ids (brandnames) are at most 11 GSM characters; numbers up to 16 digits.
    if value and not (
        re.fullmatch(r"[A-Za-z0-9 ._-]{1,11}", value) or re.fullmatch(r"\+?\d{1,16}", value)
    ):
        raise ValidationError(
            "gateway.sender", f"{value!r}: a brandname is 1-11 letters/digits, or a number"
        )


def _upper(value: str) -> str:
    return str(value).upper()


@attrs.frozen(kw_only=True)
class _Common:
    name: str = attrs.field(validator=_name)
    url: str = attrs.field(validator=_http_url)
    sender: str = attrs.field(default="", validator=_sender)  # brandname, per gateway
    rate_per_s: float = attrs.field(default=50.0, validator=_positive("rate_per_s"))
    concurrency: int = attrs.field(default=20, validator=_positive("concurrency"))
    timeout_s: float = attrs.field(default=5.0, validator=_positive("timeout_s"))
    retries: int = 2  # quick retries inside one delivery on 429/5xx (then the engine's backoff)
    strip_diacritics: bool = False  # GSM-7 instead of UCS-2, the loss recorded in the outcome
    max_segments: int = attrs.field(default=10, validator=_positive("max_segments"))
    number_format: NumberFormat = attrs.field(
        default=NumberFormat.INTERNATIONAL, converter=NumberFormat
    )
    resolve_window_s: float = attrs.field(default=30.0, validator=_positive("resolve_window_s"))


@attrs.frozen(kw_only=True)
class KannelGateway(_Common):
    """Kannel's smsbox ``sendsms`` interface (``url`` = ``http://host:13013/cgi-bin/sendsms``).

    ``dlr_mask``: which delivery reports Kannel sends to our receiver (1 delivered, 2 failed,
    4 buffered, 8 SMSC accepted, 16 SMSC rejected; 31 = all). 8 and 16 must stay on: they are
    how a submission left ambiguous by a crash is recognised (see docs/sms.md).
    ``admin_url``/``admin_password``: bearerbox's admin interface; when set, a crash-ambiguous
    key is also looked for among the messages queued in Kannel's store."""

    kind: str = "kannel"
    username: str
    password: str  # env:NAME
    method: str = attrs.field(default="GET", converter=_upper)
    smsc: str = ""
    dlr_mask: int = 31
    admin_url: str = ""
    admin_password: str = ""  # env:NAME
    idempotent: bool = False  # Kannel has no idempotency key of its own

    def __attrs_post_init__(self) -> None:
        if self.method not in ("GET", "POST"):
            raise ValidationError("gateway.method", "Kannel's sendsms takes GET or POST")
        if not 0 <= self.dlr_mask <= 31 or (self.dlr_mask & 24) != 24:
            raise ValidationError(
                "gateway.dlr_mask", "must include 8 and 16 (SMSC reports), e.g. 31 or 25"
            )

    def dlr_url(self, receiver_url: str, key: str, token: str = "") -> str:
        """Where Kannel reports on this message: our receiver, with our key in the URL."""
        return (
            f"{receiver_url.rstrip('/')}/sms/dlr/{self.name}?key={quote(key)}{_token(token)}"
            "&type=%d&reply=%A&smsc_id=%F&kannel_id=%I&ts=%T"
        )

    def request(
        self, to: str, enc: Encoded, key: str, receiver_url: str, password: str, token: str = ""
    ) -> tuple[str, str, Mapping[str, str], bytes | None, Mapping[str, str]]:
        """(method, url, query, body, headers) of one submission."""
        text = "".join(enc.parts)
        common = {
            "username": self.username,
            "password": password,
            "to": to,
            "coding": str(enc.coding.kannel),
            "charset": "UTF-8",
        }
        if self.sender:
            common["from"] = self.sender
        if self.smsc:
            common["smsc"] = self.smsc
        if receiver_url:
            common["dlr-mask"] = str(self.dlr_mask)
            common["dlr-url"] = self.dlr_url(receiver_url, key, token)
        if self.method == "GET":
            return "GET", self.url, {**common, "text": text}, None, {}
        headers = {f"X-Kannel-{_KANNEL_HEADER[k]}": v for k, v in common.items()}
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        return "POST", self.url, {}, text.encode(), headers


_KANNEL_HEADER = {
    "username": "Username",
    "password": "Password",
    "to": "To",
    "from": "From",
    "coding": "Coding",
    "charset": "Charset",
    "smsc": "SMSC",
    "dlr-mask": "DLR-Mask",
    "dlr-url": "DLR-Url",
}

#: The generic gateway's default request body; ``{name}`` fields are filled per message.
DEFAULT_JSON_BODY: Mapping[str, Any] = {
    "to": "{to}",
    "from": "{sender}",
    "text": "{text}",
    "coding": "{coding}",
    "segments": "{segments}",
    "reference": "{key}",
    "callback_url": "{dlr_url}",
}
_FIELD = re.compile(r"\{([a-z_]+)\}")


def render_template(template: Any, values: Mapping[str, Any]) -> Any:
    """Fill ``{name}`` fields in every string of a JSON-like template. A string that is exactly
    one field takes the value as it is (a number stays a number); unknown fields are an error."""
    if isinstance(template, str):
        whole = _FIELD.fullmatch(template)
        if whole:
            return values[whole.group(1)]
        return _FIELD.sub(lambda m: str(values[m.group(1)]), template)
    if isinstance(template, Mapping):
        return {k: render_template(v, values) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render_template(v, values) for v in template]
    return template


def _mapping(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class HttpJsonGateway(_Common):
    """Any HTTP/JSON SMS API, described by templates.

    ``body``: the JSON request (default ``DEFAULT_JSON_BODY``); ``headers``: header templates
    (``{secret}`` is the resolved ``secret``, e.g. ``{"Authorization": "Bearer {secret}"}``);
    ``id_field``: where the answer carries the gateway's message id (dotted path);
    ``idempotent``: the gateway de-duplicates by our ``reference`` (default False; when True a
    resubmission after a crash is safe at once); ``health_url``: what ``probe`` asks (default ``url``)."""

    kind: str = "json"
    method: str = attrs.field(default="POST", converter=_upper)
    body: Mapping[str, Any] = attrs.field(
        factory=lambda: dict(DEFAULT_JSON_BODY), converter=_mapping
    )
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_mapping)
    secret: str = ""  # env:NAME
    id_field: str = "id"
    idempotent: bool = False  # say True only for a gateway that de-duplicates by reference
    health_url: str = ""
    number_format: NumberFormat = attrs.field(default=NumberFormat.E164, converter=NumberFormat)

    def __attrs_post_init__(self) -> None:
        if self.method not in ("POST", "PUT"):
            raise ValidationError("gateway.method", "the JSON gateway takes POST or PUT")
        fields = set(_FIELD.findall(json.dumps(self.body) + json.dumps(self.headers)))
        unknown = fields - {*_JSON_FIELDS, "secret"}
        if unknown:
            raise ValidationError(
                "gateway.body",
                f"unknown template field(s) {sorted(unknown)}; known: {_JSON_FIELDS}",
            )

    def dlr_url(self, receiver_url: str, key: str, token: str = "") -> str:
        """Where the gateway posts its delivery report for this message."""
        return f"{receiver_url.rstrip('/')}/sms/dlr/{self.name}?key={quote(key)}{_token(token)}"

    def request(
        self, to: str, enc: Encoded, key: str, receiver_url: str, secret: str, token: str = ""
    ) -> tuple[str, str, Mapping[str, str], bytes | None, Mapping[str, str]]:
        """(method, url, query, body, headers) of one submission."""
        values = {
            "to": to,
            "sender": self.sender,
            "text": "".join(enc.parts),
            "coding": enc.coding.value,
            "segments": enc.segments,
            "key": key,
            "dlr_url": self.dlr_url(receiver_url, key, token) if receiver_url else "",
        }
        body = json.dumps(render_template(self.body, values), ensure_ascii=False).encode()
        headers = {
            k: str(render_template(v, {**values, "secret": secret}))
            for k, v in self.headers.items()
        }
        headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Idempotency-Key"] = key
        return self.method, self.url, {}, body, headers


_JSON_FIELDS = ("to", "sender", "text", "coding", "segments", "key", "dlr_url")

Gateway: TypeAlias = KannelGateway | HttpJsonGateway


def gateway_from_mapping(settings: Mapping[str, Any]) -> Gateway:
    """A gateway from a TOML table: ``kind = "kannel"`` (default) or ``"json"``, plus fields."""
    data = dict(settings)
    kind = str(data.pop("kind", "kannel"))
    cls: type[KannelGateway] | type[HttpJsonGateway]
    if kind == "kannel":
        cls = KannelGateway
    elif kind == "json":
        cls = HttpJsonGateway
    else:
        raise ValidationError("gateway.kind", f"{kind!r}: use 'kannel' or 'json'")
    known = {a.name for a in attrs.fields(cls)} - {"kind"}
    unknown = set(data) - known
    if unknown:
        raise ValidationError(
            "gateway", f"unknown setting(s) {sorted(unknown)} for a {kind} gateway"
        )
    try:
        return cls(**data)
    except TypeError as exc:
        raise ValidationError("gateway", str(exc)) from None


# -- answers ---------------------------------------------------------------------------------


class AnswerKind(enum.StrEnum):
    """What a gateway's answer means for the message."""

    ACCEPTED = "accepted"  # it has the message
    REFUSED = "refused"  # it will never take it (as sent)
    RETRY = "retry"  # it did not take it; sending again is safe
    AMBIGUOUS = "ambiguous"  # it may or may not have it


@attrs.frozen
class Answer:
    """A gateway's answer, interpreted."""

    kind: AnswerKind
    reason: str
    remote_id: str = ""
    retry_after_s: float | None = None


def _snippet(body: bytes, n: int = 120) -> str:
    return body[:n].decode("utf-8", "replace").strip()


def kannel_answer(status: int, body: bytes, retry_after: float | None) -> Answer:
    """Kannel answers ``202 0: Accepted for delivery`` / ``3: Queued for later delivery``, or an
    error status with a text (``403 Authorization failed for sendsms``)."""
    text = _snippet(body)
    if status in (200, 202):
        m = re.match(r"^(\d+):\s*(.+)$", text)
        if m and m.group(1) in ("0", "3"):
            return Answer(AnswerKind.ACCEPTED, m.group(2))
        return Answer(
            AnswerKind.AMBIGUOUS,
            f"HTTP {status} with an answer Kannel never gives ({text[:80]!r})",
        )
    if status == 429 or status >= 500:
        return Answer(
            AnswerKind.RETRY, f"HTTP {status}: {text or 'no text'}", retry_after_s=retry_after
        )
    return Answer(AnswerKind.REFUSED, f"HTTP {status}: {text or 'no text'}")


def _dig(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _error_of(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return _snippet(body) or "no text"
    if isinstance(doc, Mapping):
        for k in ("error", "reason", "message", "detail"):
            if isinstance(doc.get(k), str) and doc[k]:
                return str(doc[k])[:200]
    return _snippet(body) or "no text"


def json_answer(status: int, body: bytes, retry_after: float | None, id_field: str) -> Answer:
    """2xx with the message id at ``id_field``: accepted; 409: a duplicate of an accepted key;
    429/5xx: retry; other 4xx: refused; anything unreadable: ambiguous."""
    if 200 <= status < 300 or status == 409:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        remote = _dig(doc, id_field) if isinstance(doc, Mapping) else None
        if remote is None or remote == "":
            return Answer(
                AnswerKind.AMBIGUOUS,
                f"HTTP {status} without a message id at {id_field!r} ({_snippet(body, 80)!r})",
            )
        what = "duplicate of an accepted reference" if status == 409 else "accepted"
        return Answer(AnswerKind.ACCEPTED, what, str(remote))
    if status == 429 or status >= 500:
        return Answer(
            AnswerKind.RETRY, f"HTTP {status}: {_error_of(body)}", retry_after_s=retry_after
        )
    return Answer(AnswerKind.REFUSED, f"HTTP {status}: {_error_of(body)}")
