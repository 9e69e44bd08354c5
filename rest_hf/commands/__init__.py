"""Sub-commands of the `rest-hf` command line (see `rest_hf.cli`)."""
