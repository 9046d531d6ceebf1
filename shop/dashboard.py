"""What waits for a person, counted for the admin index: one count per admin changelist filter.

A watch names a model and the query string of its changelist; its count is the rows that very
filter shows, so the number on the dashboard and the rows behind its link are the same. The
watches themselves are declared by the admin (``shop.admin``): this module knows no app above
``shop``, so the dependency rule (core ← apps) holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from django.contrib.admin.utils import prepare_lookup_value
from django.contrib.auth import get_permission_codename
from django.db.models import Model, Q, QuerySet
from django.urls import reverse
from django.utils.functional import Promise


class PermissionHolder(Protocol):
    def has_perm(self, perm: str, obj: Any = ...) -> bool: ...


@dataclass(frozen=True)
class Watch:
    """One count on the dashboard: the rows of ``model`` its changelist shows for ``params``.

    ``params`` are field lookups as the admin takes them from a query string (counted with
    the same lookups), or the parameter of a custom list filter, in which case ``rows`` must be
    that filter's condition.
    """

    key: str
    group: str | Promise
    label: str | Promise
    model: type[Model]
    params: Mapping[str, str]
    rows: Q | None = None

    def queryset(self) -> QuerySet[Model]:
        if self.rows is not None:
            return self.model._default_manager.filter(self.rows)
        lookups = {name: prepare_lookup_value(name, value) for name, value in self.params.items()}
        return self.model._default_manager.filter(**lookups)


@dataclass(frozen=True)
class Tally:
    key: str
    label: str | Promise
    count: int
    url: str


@dataclass(frozen=True)
class TallyGroup:
    title: str | Promise
    tallies: list[Tally] = field(default_factory=list)


def may_view(user: PermissionHolder, model: type[Model]) -> bool:
    """The admin's own rule: the view or the change permission lets a user see a changelist."""
    opts = model._meta
    return any(
        user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
        for action in ("view", "change")
    )


def needs_a_person(
    user: PermissionHolder, watches: Iterable[Watch], *, site: str = "admin"
) -> Sequence[TallyGroup]:
    """The counts ``user`` may see (0 included: "nothing needs you" is news too), grouped in
    the order of ``watches``, each with the link to its filtered changelist."""
    groups: dict[str | Promise, TallyGroup] = {}
    for watch in watches:
        if not may_view(user, watch.model):
            continue
        opts = watch.model._meta
        url = reverse(f"{site}:{opts.app_label}_{opts.model_name}_changelist")
        tally = Tally(
            key=watch.key,
            label=watch.label,
            count=watch.queryset().count(),
            url=f"{url}?{urlencode(watch.params)}",
        )
        groups.setdefault(watch.group, TallyGroup(title=watch.group)).tallies.append(tally)
    return list(groups.values())
