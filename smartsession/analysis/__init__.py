"""Frame -> Observation: the Analyzer that runs the whole pipeline, and the Observation it returns.

Used alike by the ``smartsession analyze`` command, the Voila pages and the notebooks.
"""

from smartsession.analysis.observation import Observation

__all__ = ["Analyzer", "Observation"]


def __getattr__(name):
    # Importing the Analyzer loads MediaPipe and scikit-learn (seconds): only on first use, so that
    # `smartsession.analysis.cli` can register the `analyze` command without slowing every command.
    if name == "Analyzer":
        from smartsession.analysis.analyzer import Analyzer

        return Analyzer
    raise AttributeError(f"module 'smartsession.analysis' has no attribute {name!r}")
