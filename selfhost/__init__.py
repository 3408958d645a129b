"""The `selfhost` command line: the offline plan, the Automation API commands and the endpoint clients."""
