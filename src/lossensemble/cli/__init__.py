"""The ``lossensemble`` command line (one module per subcommand)."""
