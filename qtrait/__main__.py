from qtrait.cli.main import entry

entry()
