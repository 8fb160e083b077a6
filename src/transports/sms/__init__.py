"""SMS to subscribers (tin nhắn SMS): Kannel and HTTP/JSON gateways, delivery reports, inbound
messages as citizen feedback, GSM-7 / UCS-2 encoding for Vietnamese text.

``SmsTransport`` is the transport (name ``sms``, channel ``sms``); ``receiver_app`` receives the
gateways' delivery reports and inbound messages; subscribers are devices of kind
``sms_subscriber`` registered with ``subscriber_specs``. See ``docs/sms.md``.
"""

from transports.sms.encoding import (
    Coding,
    Encoded,
    Stripped,
    encode,
    is_gsm7,
    strip_diacritics,
)
from transports.sms.gateways import (
    DEFAULT_JSON_BODY,
    KANNEL_DLR,
    Gateway,
    HttpJsonGateway,
    KannelGateway,
    gateway_from_mapping,
)
from transports.sms.journal import Journal
from transports.sms.phone import NumberFormat, format_number, mask, normalise_vn
from transports.sms.receiver import (
    AppRecorder,
    Inbound,
    decode_mo,
    parse_key,
    receiver_app,
    send_answer,
)
from transports.sms.subscribers import subscriber_specs
from transports.sms.transport import SmsTransport, base_key, prepare_text

__all__ = [
    "DEFAULT_JSON_BODY",
    "KANNEL_DLR",
    "AppRecorder",
    "Coding",
    "Encoded",
    "Gateway",
    "HttpJsonGateway",
    "Inbound",
    "Journal",
    "KannelGateway",
    "NumberFormat",
    "SmsTransport",
    "Stripped",
    "base_key",
    "decode_mo",
    "encode",
    "format_number",
    "gateway_from_mapping",
    "is_gsm7",
    "mask",
    "normalise_vn",
    "parse_key",
    "prepare_text",
    "receiver_app",
    "send_answer",
    "strip_diacritics",
    "subscriber_specs",
]
