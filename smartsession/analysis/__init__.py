"""Frame -> Observation: the Analyzer that runs the whole pipeline, and the Observation it returns.

Used alike by the ``smartsession analyze`` command, the Voila pages and the notebooks.
"""

from smartsession.analysis.analyzer import Analyzer
from smartsession.analysis.observation import Observation

__all__ = ["Analyzer", "Observation"]
