"""The command line behind `runner.py`: parameter types, shared state, commands, ez-prep."""
