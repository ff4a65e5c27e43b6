"""Sub-command groups of the ``ret`` command line (one module per group)."""
