"""``smartsession serve``: the student and teacher pages (Voila) and the hub in one locked-down process.

``app`` is the Voila subclass, ``lockdown`` what anonymous clients may reach, ``pool`` the preheated student
kernels, ``tls`` the self-signed certificate, ``testing`` a real server for tests and benchmarks.
"""
