"""The HTML report of a run folder (`negclean report`): see ``negclean.report.build.build_report``."""
