"""The ``qtrait`` command line (typer). One module per command group."""
