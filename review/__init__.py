"""The staff side: the admin over stored drawings, triage, the dashboard, model switching, export,
thumbnails, the operations page and their management commands. Writes are review.services', reads
review.selectors'; the views, admin actions and commands are thin over them. The models are `recognizer`'s."""
