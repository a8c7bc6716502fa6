"""The C baseline server and its build helper (see build.py)."""
