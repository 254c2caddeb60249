"""Test and benchmark support: real servers started for a test (serve, hub, Redis, PostgreSQL, nginx), a
student page without a browser, and kernel memory as Linux counts it. Importable by tests/ and benchmarks/.
"""
