"""The HTTP API (Django REST framework): the provider's status callbacks and phone login."""
