"""The mock classroom: N synthetic students who join a class and publish states through the real hub protocol.

``smartsession simulate`` lets a teacher try the dashboard without cameras; tests and benchmarks load the hub with
it. ``scenario`` checks what the lesson should look like, ``classroom`` plays it without a network, ``runner``
plays it through a hub, ``cli`` is the command.
"""

from smartsession.simulate.classroom import STATE_ENGAGEMENT, Classroom, SimulatedState, SyntheticStudent
from smartsession.simulate.runner import SimulationResult, run_simulation
from smartsession.simulate.scenario import SCENARIOS, ScenarioError, load_scenario

__all__ = [
    "SCENARIOS",
    "STATE_ENGAGEMENT",
    "Classroom",
    "ScenarioError",
    "SimulatedState",
    "SimulationResult",
    "SyntheticStudent",
    "load_scenario",
    "run_simulation",
]
