"""The speaker's own assistant: intents, timers, spoken replies and sounds (cloud mode)."""
