"""`selfhost plan`: the real program run under the Pulumi SDK's mocks, written out as files and a report."""
