"""Pixels to landmarks: decoding frames, images, videos and webcams, then MediaPipe FaceLandmarker.

The input end of the pipeline; nothing here keeps or writes a frame.
"""
