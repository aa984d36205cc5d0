"""Check families. A check is a function ``(ctx, settings) -> Iterable[Hit]``.

Checks only report facts (a message, evidence, optionally a computed weight); the engine
attaches the rule's code, name and severity, and scoring turns findings into a verdict. A
check never knows its own severity, so users can re-grade any rule in config.
"""
