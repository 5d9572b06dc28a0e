"""The staff side: the admin over stored drawings, triage, the dashboard, model switching, export,
thumbnails, the operations page and their management commands. The model itself is `recognizer`'s."""
