"""``smartsession serve``: the student and teacher pages (Voila) and the hub in one locked-down process.

``app`` is the Voila subclass, ``lockdown`` what anonymous clients may reach, ``pool`` the preheated student
kernels, ``tls`` the self-signed certificate; what it relies on inside Voila and Jupyter is in ``smartsession.seams``
(a real server for tests and benchmarks: ``tests/testkit``).
"""
