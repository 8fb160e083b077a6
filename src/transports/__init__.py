"""Built-in transport plugins for tcs-core (SIP speakers, HTTP boards, SMS gateways).

Each plugin uses only the public API of ``tcs_core`` and registers itself through the
``tcs_core.transports`` entry-point group, exactly as a third-party plugin would.
"""
