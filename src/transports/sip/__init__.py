"""IP speakers over SIP and RTP (G.711), and multicast RTP paging zones.

``SipTransport`` is the transport (name ``sip``, channel ``audio``, mode ``live``): a delivery
is a call with auto-answer headers chosen by the device's profile, the item's audio as RTP from
one 20 ms frame clock, and a BYE when it ends. ``transports.sip.message`` is the SIP/SDP codec
(also used by the simulated speaker in ``examples/``), ``transports.sip.audio`` the WAV / G.711 /
text-to-speech pipeline. See ``docs/sip.md``.
"""

from transports.sip.audio import (
    AudioCache,
    AudioError,
    EspeakRenderer,
    MediaResolver,
    PcmAudio,
    TtsRenderer,
    decode_wav,
    encode,
    local_media,
)
from transports.sip.message import (
    PAYLOAD_TYPES,
    Challenge,
    SdpMedia,
    SipAddress,
    SipError,
    SipMessage,
    build_request,
    build_response,
    digest_authorization,
    header_tag,
    parse_address,
    parse_challenge,
    parse_message,
    parse_sdp,
    sdp_offer,
)
from transports.sip.profiles import PROFILES, Profile, Zone, parse_zones, profile_of
from transports.sip.rtp import ClockStats, FrameClock, RtpStream, open_rtp_socket
from transports.sip.transport import CallRecord, SipTransport
from transports.sip.ua import SipEndpoint, Timers

__all__ = [
    "PAYLOAD_TYPES",
    "PROFILES",
    "AudioCache",
    "AudioError",
    "CallRecord",
    "Challenge",
    "ClockStats",
    "EspeakRenderer",
    "FrameClock",
    "MediaResolver",
    "PcmAudio",
    "Profile",
    "RtpStream",
    "SdpMedia",
    "SipAddress",
    "SipEndpoint",
    "SipError",
    "SipMessage",
    "SipTransport",
    "Timers",
    "TtsRenderer",
    "Zone",
    "build_request",
    "build_response",
    "decode_wav",
    "digest_authorization",
    "encode",
    "header_tag",
    "local_media",
    "open_rtp_socket",
    "parse_address",
    "parse_challenge",
    "parse_message",
    "parse_sdp",
    "parse_zones",
    "profile_of",
    "sdp_offer",
]
