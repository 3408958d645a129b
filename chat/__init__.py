"""Client side of the endpoint: the `selfhost chat` web app, the `smoke` check and the `bench` load test.

All three reach the endpoint the same way (`chat.endpoint`): from a stack's outputs through
`kubectl port-forward`, or from `--base-url`, and speak the OpenAI-compatible API through `chat.api`.
"""
