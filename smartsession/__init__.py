"""SmartSession: classroom engagement measured in real time from webcams, privately.

The public API is what this module exports; everything else may change.
"""

__version__ = "0.1.0"

from smartsession.schema import ATTENTION_STATES, PROTOCOL_VERSION, STATES, StateMessage  # noqa: E402

__all__ = [
    "__version__",
    "ATTENTION_STATES",
    "PROTOCOL_VERSION",
    "STATES",
    "Analyzer",
    "Observation",
    "StateMessage",
]


def __getattr__(name):
    # The analysis imports MediaPipe (seconds); the CLI and the hub should not pay for it.
    if name in ("Analyzer", "Observation"):
        from smartsession import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'smartsession' has no attribute {name!r}")
