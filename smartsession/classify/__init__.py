"""From features to a state and a score: per-student baseline, explicit rules, the model, engagement, smoothing.

One module per step; ``smartsession.analysis.Analyzer`` chains them.
"""
