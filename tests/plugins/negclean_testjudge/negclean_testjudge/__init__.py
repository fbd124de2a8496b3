"""A judge backend from outside negclean: ``backend: testjudge`` in a cascade YAML once this is installed."""
