"""Where SmartSession leans on the internals of Voila, jupyter_server, jupyter_client, ipykernel and tornado.

Every private attribute, override or environment contract lives in this room, each with what it relies on and the
versions it has held in; ``smartsession serve`` and ``smartsession hub`` check them at start (``check``).
"""
