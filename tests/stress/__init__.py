# A package, so that pytest puts tests/ (and with it helpers.py) on sys.path for these tests.
