"""The LLM client: the transport to any OpenAI-compatible endpoint, reading its answers,
checking an endpoint, and which asker (model, replay, remembered) each role gets."""
