"""Test helpers shipped with the package so that tests, benchmarks and plugin authors share them.

Importing ``negclean.testing.openai_server`` needs ``aiohttp`` (the ``dev`` extra).
"""
