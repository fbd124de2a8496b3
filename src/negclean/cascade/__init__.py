"""The judge cascade: ordered stages, routing rules, the judgment store and cost accounting."""
