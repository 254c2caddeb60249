"""Real labelled faces for the state classifier: sample media, labels, the feature table, webcam collection.

``media`` fetches the sample media, ``build`` turns labelled frames into feature rows, ``collect`` records a
researcher's own webcam features; nothing here writes an image or a frame.
"""
