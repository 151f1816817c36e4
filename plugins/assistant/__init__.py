"""The assistant: routes each request into a plan of tool steps, runs it around the
cognition stages, and answers (``assistant.ask``, ``assistant.chat``)."""
