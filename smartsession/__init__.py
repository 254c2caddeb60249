"""SmartSession: classroom engagement measured in real time from webcams, privately.

The public API is what this module exports; everything else may change.
"""

__version__ = "0.1.0"

from smartsession.schema import ATTENTION_STATES, PROTOCOL_VERSION, STATES, StateMessage  # noqa: E402

__all__ = ["__version__", "ATTENTION_STATES", "PROTOCOL_VERSION", "STATES", "StateMessage"]
