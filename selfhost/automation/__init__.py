"""`selfhost preview|up|destroy|refresh|outputs`: stacks driven through the Pulumi Automation API."""
