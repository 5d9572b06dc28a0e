"""Who may do what on the staff pages under /review/: the model permissions, as the admin checks them.

- reading drawings (the triage page and its queue, the dashboard, the models page's accuracy):
  `recognizer.view_drawing`, or `recognizer.change_drawing` (as in the admin, a right to change is a
  right to see);
- labelling, confirming, excluding (the triage API, the admin's actions): `recognizer.change_drawing`;
- downloading training data: `recognizer.export_drawing` (models.Drawing.Meta.permissions);
- switching the served model: `recognizer.add_servingmodel` (review.serving).

Being staff only opens the door: a staff user without the permission gets 403, like the admin's
own pages. Anyone not staff (or not logged in) is sent to the admin's login, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

VIEW_DRAWINGS = ("recognizer.view_drawing", "recognizer.change_drawing")
CHANGE_DRAWINGS = ("recognizer.change_drawing",)
EXPORT_DRAWINGS = ("recognizer.export_drawing",)
SWITCH_MODELS = ("recognizer.add_servingmodel",)
# The models page: its accuracy figures are of drawings; a user who may switch models may see what
# they switch between.
VIEW_MODELS = (*VIEW_DRAWINGS, "recognizer.view_servingmodel", *SWITCH_MODELS)

View = Callable[..., HttpResponse]


def is_staff(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff)


def has_any(request: HttpRequest, permissions: Iterable[str]) -> bool:
    """Active staff holding at least one of `permissions` (a superuser holds them all)."""
    return is_staff(request) and any(request.user.has_perm(p) for p in permissions)


def staff_page(*permissions: str) -> Callable[[View], View]:
    """A page for staff holding one of `permissions`: the admin's login for everyone else who is not
    staff, 403 (PermissionDenied) for staff without them."""

    def decorator(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_any(request, permissions):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return staff_member_required(checked)

    return decorator
