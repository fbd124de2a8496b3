"""Human annotation of judged candidates and agreement with the judges (`negclean annotate`)."""
